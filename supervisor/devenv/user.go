package devenv

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// EnvGatewayUser overrides the gateway identity as "uid:gid".
const EnvGatewayUser = "JOBLET_GATEWAY_USER"

// Identity is a numeric uid and gid.
type Identity struct{ UID, GID int }

// Lookup finds users and groups by name; the os/user functions in
// production, maps in tests.
type Lookup struct {
	User  func(name string) (*user.User, error)
	Group func(name string) (*user.Group, error)
}

// OSLookup reads the host's user database.
var OSLookup = Lookup{User: user.Lookup, Group: user.LookupGroup}

// nobody is the traditional overflow id, used when no group is named
// "nogroup" either.
const nobody = 65534

// GatewayIdentity returns the unprivileged identity the gateway runs as:
// $JOBLET_GATEWAY_USER (uid:gid) if set, else user "joblet" with its primary
// group, else "nobody" with group "nogroup" (65534:65534 when absent). No
// user is ever created. Root is refused: the gateway must hold no privilege.
func GatewayIdentity(getenv func(string) string, lk Lookup) (Identity, error) {
	if v := getenv(EnvGatewayUser); v != "" {
		id, err := parseIdentity(v)
		if err != nil {
			return Identity{}, fmt.Errorf("%s=%q: %w", EnvGatewayUser, v, err)
		}
		return id, nil
	}
	if u, err := lk.User("joblet"); err == nil {
		return identityOf(u)
	}
	id := Identity{UID: nobody, GID: nobody}
	if u, err := lk.User("nobody"); err == nil {
		uid, err := strconv.Atoi(u.Uid)
		if err != nil {
			return Identity{}, fmt.Errorf("user nobody: uid %q: %w", u.Uid, err)
		}
		id.UID = uid
	}
	if g, err := lk.Group("nogroup"); err == nil {
		gid, err := strconv.Atoi(g.Gid)
		if err != nil {
			return Identity{}, fmt.Errorf("group nogroup: gid %q: %w", g.Gid, err)
		}
		id.GID = gid
	}
	return id, checkUnprivileged(id)
}

func identityOf(u *user.User) (Identity, error) {
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return Identity{}, fmt.Errorf("user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return Identity{}, fmt.Errorf("user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	id := Identity{UID: uid, GID: gid}
	return id, checkUnprivileged(id)
}

func parseIdentity(v string) (Identity, error) {
	u, g, ok := strings.Cut(v, ":")
	if !ok {
		return Identity{}, errors.New("want uid:gid")
	}
	uid, err := strconv.ParseUint(u, 10, 31)
	if err != nil {
		return Identity{}, fmt.Errorf("uid: %w", err)
	}
	gid, err := strconv.ParseUint(g, 10, 31)
	if err != nil {
		return Identity{}, fmt.Errorf("gid: %w", err)
	}
	id := Identity{UID: int(uid), GID: int(gid)}
	return id, checkUnprivileged(id)
}

func checkUnprivileged(id Identity) error {
	if id.UID == 0 || id.GID == 0 {
		return fmt.Errorf("gateway identity %d:%d is privileged; it must be a non-root uid and gid", id.UID, id.GID)
	}
	return nil
}
