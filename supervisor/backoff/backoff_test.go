package backoff

import (
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	b := Default()
	const ms = time.Millisecond
	want := []time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 10 * time.Second, 10 * time.Second}
	for i, w := range want {
		if got := b.Next(time.Second); got != w {
			t.Fatalf("crash %d: delay %v, want %v", i+1, got, w)
		}
	}
	if got := b.Next(30 * time.Second); got != 200*ms {
		t.Fatalf("after 30 s of healthy running: delay %v, want 200ms", got)
	}
	if got := b.Next(29 * time.Second); got != 400*ms {
		t.Fatalf("crash after 29 s: delay %v, want 400ms (no reset)", got)
	}
}
