package cli

import (
	"fmt"
	"io"

	"github.com/joblet-dev/joblet/rnx/configfile"
	"github.com/joblet-dev/joblet/rnx/render"
	"github.com/spf13/cobra"
)

func (a *app) nodesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes in the config, marking the selected one with *",
		Args:  exactArgs(0, "no arguments"),
		RunE: runE(func(*cobra.Command, []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			nodes := make([]render.Node, 0, len(cfg.Nodes))
			for _, name := range cfg.Names() {
				nodes = append(nodes, render.Node{Name: name, Address: cfg.Nodes[name].Address})
			}
			return render.Nodes(a.env.Stdout, nodes, a.node())
		}),
	}
}

func (a *app) configHelpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "config-help",
		Short: "Show an example config and where rnx looks for it",
		Args:  exactArgs(0, "no arguments"),
		RunE: runE(func(*cobra.Command, []string) error {
			return configHelp(a.env.Stdout)
		}),
	}
}

func configHelp(w io.Writer) error {
	_, err := fmt.Fprintf(w, `rnx reads a YAML config of named nodes, each with its address and the PEM
client certificate, key and CA it uses:

  version: "3.0"
  nodes:
    default:
      address: "192.168.1.100:50051"
      cert: |
        -----BEGIN CERTIFICATE-----
        ...
      key: |
        -----BEGIN PRIVATE KEY-----
        ...
      ca: |
        -----BEGIN CERTIFICATE-----
        ...
    production:
      address: "prod.example.com:50051"
      cert: |
        ...

The server certificate must be valid for the host part of the address.
The client certificate's OU is its role: admin, or viewer (list, status, log).

rnx uses the first config it finds:
  1. --config PATH
  2. $RNX_CONFIG
  3. $JOBLET_DEV_DIR/%[1]s, when JOBLET_DEV_DIR is set
  4. %[2]s/%[1]s in the current directory or a parent (made by "make run")
  5. ~/%[3]s
  6. %[4]s

The node is --node NAME, else $JOBLET_NODE, else "default".
`, configfile.DevConfig, configfile.DevDir, configfile.UserConfig, configfile.SystemConfig)
	return err
}
