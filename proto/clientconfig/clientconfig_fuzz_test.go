package clientconfig

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load and looks up nodes in whatever it
// accepts: nothing may panic, an accepted file has nodes, and a node that
// Node returns has every field set.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"",
		"nodes: {}\n",
		"nodes:\n  default:\n    address: h:50051\n    cert: c\n    key: k\n    ca: a\n",
		"nodes:\n  default:\n",
		"nodes:\n  default: ~\n  other:\n    address: x\n",
		"nodes: [1, 2]\n",
		"version: 1\nnodes:\n  \"\": {address: a}\n",
		"a: &a [*a, *a]\n",
	} {
		f.Add([]byte(s), "")
	}
	f.Add([]byte("nodes:\n  prod:\n    address: a\n"), "prod")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte, name string) {
		p := filepath.Join(dir, "rnx-config.yml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p)
		if err != nil {
			return
		}
		if len(c.Nodes) == 0 {
			t.Fatalf("Load(%q) accepted a config without nodes", b)
		}
		c.Names()
		for _, n := range append(c.Names(), name) {
			node, err := c.Node(n)
			if err != nil {
				continue
			}
			if node == nil || node.Address == "" || node.Cert == "" || node.Key == "" || node.CA == "" {
				t.Fatalf("Node(%q) of %q returned an incomplete node %+v", n, b, node)
			}
		}
	})
}
