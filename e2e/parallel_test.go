package e2e

import (
	"strconv"
	"sync"
	"testing"
)

func TestParallelRuns(t *testing.T) {
	needSuite(t)
	const n = 20
	var mu sync.Mutex
	ids := map[string]int{}
	// Parallel subtests of one group: the group returns when all have ended.
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				r := rnx(t, "run", "echo", strconv.Itoa(i))
				if want := strconv.Itoa(i) + "\n"; r.code != 0 || r.stdout != want {
					t.Fatalf("rnx run echo %d: want %q and exit 0; got %v", i, want, r)
				}
				id := headerID(t, r.stderr)
				mu.Lock()
				defer mu.Unlock()
				if j, dup := ids[id]; dup {
					t.Errorf("runs %d and %d got the same job id %s", j, i, id)
				}
				ids[id] = i
			})
		}
	})
}
