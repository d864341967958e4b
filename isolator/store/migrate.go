package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// legacyDirName is where the previous layout kept one file per record,
// <dir>/jobs/<id>.json, each holding a file.
const legacyDirName = "jobs"

// readLegacy reads the records of the previous layout, by id, and says
// whether its directory exists. Anything else in it (such as a temporary
// file left by a crash) is ignored, as that layout's Store did; a record
// that cannot be decoded is an error, as it was there.
func (s *Store) readLegacy() (map[uint64][]byte, bool, error) {
	dir := filepath.Join(s.dir, legacyDirName)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("list job records: %w", err)
	}
	recs := map[uint64][]byte{}
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		id, err := strconv.ParseUint(base, 10, 64)
		if err != nil || strconv.FormatUint(id, 10) != base {
			continue
		}
		name := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, false, fmt.Errorf("read job record: %w", err)
		}
		r, err := decode(b)
		if err != nil {
			return nil, false, fmt.Errorf("decode %s: %w", name, err)
		}
		if r.Job.GetId() != base {
			return nil, false, fmt.Errorf("decode %s: it holds job %q", name, r.Job.GetId())
		}
		recs[id] = b
	}
	return recs, true, nil
}
