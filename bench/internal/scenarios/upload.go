package scenarios

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// MakeTree fills dir with files of size bytes each (in a few
// subdirectories), of incompressible content, and returns the bytes written.
func MakeTree(dir string, files, size int) (int64, error) {
	rng := rand.NewChaCha8([32]byte{'j', 'o', 'b', 'l', 'e', 't'})
	buf := make([]byte, size)
	var total int64
	for i := range files {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%10))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return 0, fmt.Errorf("upload tree: %w", err)
		}
		_, _ = rng.Read(buf)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d.bin", i)), buf, 0o644); err != nil {
			return 0, fmt.Errorf("upload tree: %w", err)
		}
		total += int64(size)
	}
	return total, nil
}

// Upload times `rnx run --upload-dir=DIR true`: the upload, the job's start
// and its end.
func (r RNX) Upload(dir string) (time.Duration, error) {
	d, _, err := r.Run(nil, "--upload-dir="+dir, "true")
	return d, err
}
