package smalldisk

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFillThenFree(t *testing.T) {
	dir, ok := Dir(t, "128k")
	if !ok {
		return
	}
	filler := Fill(t, dir)
	err := os.WriteFile(filepath.Join(dir, "more"), make([]byte, 8192), 0o600)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("write on the filled disk: %v, want ENOSPC", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "more"), make([]byte, 8192), 0o600); err != nil {
		t.Fatalf("write once space is back: %v", err)
	}
}
