package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	jobletv1 "github.com/joblet-dev/joblet/proto/gen/joblet/v1"
	"github.com/joblet-dev/joblet/rnx/client"
	"github.com/joblet-dev/joblet/rnx/render"
	"github.com/joblet-dev/joblet/rnx/termsafe"
)

// networkModes is the help text that says what each kind of network gives a
// job; rnx run --network and rnx network share it.
const networkModes = `  bridge    the default: the built-in 172.20.0.0/16 network; its jobs
            reach each other
  isolated  outbound access only; no other job is reachable
  none      loopback only
  NAME      a custom network (rnx network create); its jobs reach each other
            and no other network`

func (a *app) networkCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Create, list and remove networks",
		Long: "Jobs join a network with rnx run --network=NAME:\n\n" + networkModes + `

Jobs in the same network resolve each other by name (rnx run --name) and
by job-<ID>.`,
		Args: exactArgs(0, "a subcommand: create, list or remove"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.networkCreateCommand(), a.networkListCommand(), a.networkRemoveCommand())
	return cmd
}

func (a *app) networkCreateCommand() *cobra.Command {
	var cidr string
	cmd := &cobra.Command{
		Use:   "create NAME --cidr=CIDR",
		Short: "Create a custom network on an IPv4 range",
		Long: `Create a custom network on an IPv4 range such as 10.1.0.0/24 (/8 to /29).
Names are 1 to 32 lowercase letters, digits and dashes, starting with a
letter. The range must not overlap another network or the host's own.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := exactArgs(1, "one NAME")(cmd, args); err != nil {
				return err
			}
			if cidr == "" {
				return &usageError{errors.New("network create: --cidr is required, e.g. --cidr=10.1.0.0/24")}
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withConn([]string{jobletv1.NetworkService_CreateNetwork_FullMethodName}, func(conn *client.Conn) error {
				resp, err := conn.CreateNetwork(cmd.Context(), &jobletv1.CreateNetworkRequest{Name: args[0], Cidr: cidr})
				if err != nil {
					return conn.Explain(err)
				}
				return render.NetworkCreated(a.env.Stdout, resp.GetNetwork())
			})
		}),
	}
	cmd.Flags().StringVar(&cidr, "cidr", "", "the network's IPv4 range, e.g. 10.1.0.0/24")
	return cmd
}

func (a *app) networkListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the built-in and custom networks",
		Args:  exactArgs(0, "no arguments"),
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return a.withConn([]string{jobletv1.NetworkService_ListNetworks_FullMethodName}, func(conn *client.Conn) error {
				var resp *jobletv1.ListNetworksResponse
				err := a.retryUnavailable(cmd.Context(), conn, func() (err error) {
					resp, err = conn.ListNetworks(cmd.Context(), &jobletv1.ListNetworksRequest{})
					return err
				})
				if err != nil {
					return err
				}
				if asJSON {
					return render.NetworksJSON(a.env.Stdout, resp.GetNetworks())
				}
				return render.NetworkTable(a.env.Stdout, resp.GetNetworks())
			})
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func (a *app) networkRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a custom network that no job uses",
		Args:  exactArgs(1, "one NAME"),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return a.withConn([]string{jobletv1.NetworkService_RemoveNetwork_FullMethodName}, func(conn *client.Conn) error {
				if _, err := conn.RemoveNetwork(cmd.Context(), &jobletv1.RemoveNetworkRequest{Name: args[0]}); err != nil {
					return conn.Explain(err)
				}
				_, err := fmt.Fprintf(a.env.Stdout, "Network %s removed\n", termsafe.String(args[0]))
				return err
			})
		}),
	}
}
