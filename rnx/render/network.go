package render

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/termsafe"
)

// notApplicable fills the CIDR and BRIDGE of a network that has none
// ("none").
const notApplicable = "N/A"

// NetworkCreated is what rnx network create prints.
func NetworkCreated(w io.Writer, n *jobletv1.Network) error {
	_, err := fmt.Fprintf(w, "Network %s created (%s, bridge %s)\n",
		termsafe.String(n.GetName()), orNA(n.GetCidr()), orNA(n.GetBridge()))
	return err
}

// NetworkTable writes the networks as aligned columns under a header and a
// rule, built-ins marked in the JOBS column, or "No networks found".
func NetworkTable(w io.Writer, nets []*jobletv1.Network) error {
	if len(nets) == 0 {
		_, err := io.WriteString(w, "No networks found\n")
		return err
	}
	rows := [][]string{{"NAME", "CIDR", "BRIDGE", "JOBS"}, nil}
	for _, n := range nets {
		jobs := strconv.Itoa(int(n.GetJobs()))
		if n.GetBuiltin() {
			jobs += " (built-in)"
		}
		rows = append(rows, []string{termsafe.String(n.GetName()), orNA(n.GetCidr()), orNA(n.GetBridge()), jobs})
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, cell := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	for _, width := range widths {
		rows[1] = append(rows[1], strings.Repeat("-", width))
	}
	var b strings.Builder
	for _, r := range rows {
		for i, cell := range r {
			if i == len(r)-1 {
				b.WriteString(cell + "\n")
				continue
			}
			b.WriteString(cell + strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell)+2))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// NetworkJSON is the stable JSON shape of a network for scripts: every key
// always present, "" for the CIDR and bridge of "none".
type NetworkJSON struct {
	Name    string `json:"name"`
	CIDR    string `json:"cidr"`
	Bridge  string `json:"bridge"`
	Jobs    int32  `json:"jobs"`
	Builtin bool   `json:"builtin"`
}

// NetworksJSON writes networks as an indented JSON array ("[]" when empty).
func NetworksJSON(w io.Writer, nets []*jobletv1.Network) error {
	list := make([]NetworkJSON, len(nets))
	for i, n := range nets {
		list[i] = NetworkJSON{n.GetName(), n.GetCidr(), n.GetBridge(), n.GetJobs(), n.GetBuiltin()}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}

// orNA is s made terminal-safe, or N/A when empty.
func orNA(s string) string {
	if s == "" {
		return notApplicable
	}
	return termsafe.String(s)
}
