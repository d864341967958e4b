package certs

import (
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked")
	if err := os.WriteFile(path, []byte("# revoked client certificates\n0A:0b"), 0o640); err != nil {
		t.Fatal(err)
	}
	s, err := ParseSerial("0x1F")
	if err != nil {
		t.Fatal(err)
	}
	if added, err := Revoke(path, s, "bob's\nlaptop"); err != nil || !added {
		t.Fatalf("Revoke: added %v, %v", added, err)
	}
	// Listed already, in whatever spelling: nothing changes.
	for _, again := range []*big.Int{s, big.NewInt(0xa0b)} {
		if added, err := Revoke(path, again, "again"); err != nil || added {
			t.Fatalf("Revoke of a listed serial %x: added %v, %v", again, added, err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# revoked client certificates\n0A:0b\n1f  # bob's laptop\n"; string(b) != want {
		t.Errorf("file:\n%q\nwant\n%q", b, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the file's 0640 kept", fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".revoked.tmp*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestRevokeConcurrent: revocations racing on one file all land.
func TestRevokeConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked") // created by the first
	var wg sync.WaitGroup
	for i := 1; i <= 20; i++ {
		wg.Go(func() {
			if _, err := Revoke(path, big.NewInt(int64(i)), fmt.Sprint("client ", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 20 {
		t.Errorf("%d lines after 20 concurrent revocations:\n%s", n, b)
	}
	for i := 1; i <= 20; i++ {
		if !listed(b, big.NewInt(int64(i)).Text(16)) {
			t.Errorf("serial %x lost", i)
		}
	}
}

func TestParseSerial(t *testing.T) {
	for _, bad := range []string{"", "xyz", "-1", "+1", "0x", strings.Repeat("f", 41), "1 2"} {
		if _, err := ParseSerial(bad); err == nil {
			t.Errorf("ParseSerial(%q) accepted", bad)
		}
	}
	if s, err := ParseSerial("de:AD:be:ef"); err != nil || s.Text(16) != "deadbeef" {
		t.Errorf("ParseSerial(de:AD:be:ef) = %v, %v", s, err)
	}
}
