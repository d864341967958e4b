package setup

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os/user"
	"path/filepath"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/joblet-dev/joblet/proto/clientconfig"
)

const usage = `usage:
  joblet-certs init [--dir DIR] [--address ADDR] [--user USER] [--template FILE] [--force]
  joblet-certs client --name NAME --role admin|viewer [--dir DIR] [--address HOST:PORT]
  joblet-certs revoke (--cert FILE | --serial HEX) [--file PATH | --dir DIR]`

// Main is joblet-certs: it runs the subcommand in args, writing a client
// config to stdout and progress to stderr.
func Main(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "init":
		return initCmd(args[1:], stderr)
	case "client":
		return clientCmd(args[1:], stdout)
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func initCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "/opt/joblet/config", "configuration directory")
	address := fs.String("address", "", "address clients use to reach this server (default: the first non-loopback IP)")
	userName := fs.String("user", "joblet", "the gateway's user; its group may read the daemon config")
	template := fs.String("template", "/usr/share/joblet/joblet-config.yml", "daemon config to start from")
	port := fs.Int("port", 0, "the gateway's TCP port (default: the template's)")
	force := fs.Bool("force", false, "replace an existing configuration, certificates included")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := user.Lookup(*userName)
	if err != nil {
		return fmt.Errorf("gateway user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if *address == "" {
		*address = DefaultAddress()
	}
	wrote, err := Run(Options{
		Dir: *dir, Template: *template, Address: *address, Hosts: LocalHosts(),
		Port: *port, UID: uid, GID: gid, Force: *force,
	})
	if errors.Is(err, ErrConfigured) {
		fmt.Fprintf(stderr, "%v; keeping it (--force replaces it)\n", err)
		return nil
	}
	for _, p := range wrote {
		fmt.Fprintln(stderr, "wrote", p)
	}
	return err
}

func clientCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	dir := fs.String("dir", "/opt/joblet/config", "configuration directory holding the CA")
	name := fs.String("name", "", "the client's name (certificate common name)")
	role := fs.String("role", "viewer", "admin or viewer")
	address := fs.String("address", "", "server HOST:PORT (default: the admin config's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--name is required")
	}
	if *address == "" {
		admin, err := clientconfig.Load(filepath.Join(*dir, AdminConfig))
		if err != nil {
			return err
		}
		n, err := admin.Node("")
		if err != nil {
			return err
		}
		*address = n.Address
	}
	if _, _, err := net.SplitHostPort(*address); err != nil {
		return fmt.Errorf("--address %q: want HOST:PORT", *address)
	}
	c, err := Client(*dir, *address, *name, *role)
	if err != nil {
		return err
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode client config: %w", err)
	}
	_, err = stdout.Write(b)
	return err
}
