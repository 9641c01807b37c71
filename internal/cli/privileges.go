package cli

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// User is the account --user drops privileges to.
type User struct {
	Name     string
	UID, GID int
	Groups   []int // supplementary groups, as initgroups(3) sets them
	Home     string
}

// LookupUser finds a user account by name, with its groups.
func LookupUser(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	res := &User{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir, Groups: []int{gid}}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.Atoi(s); err == nil && g != gid {
				res.Groups = append(res.Groups, g)
			}
		}
	}
	return res, nil
}

// dropPrivileges switches the whole process (every thread: Go applies
// setuid and friends to all of them) to u: supplementary groups, then
// group, then user. It then checks that root cannot be regained.
//
// Unlike 1.x it does not chroot to the user's home directory: log file
// reopening on SIGHUP and syslog need the real file system.
func dropPrivileges(u *User) error {
	if err := syscall.Setgroups(u.Groups); err != nil {
		return fmt.Errorf("setting the groups of %s: %w", u.Name, err)
	}
	if err := syscall.Setgid(u.GID); err != nil {
		return fmt.Errorf("setgid %d: %w", u.GID, err)
	}
	if err := syscall.Setuid(u.UID); err != nil {
		return fmt.Errorf("setuid %d: %w", u.UID, err)
	}
	if os.Getuid() != u.UID || os.Geteuid() != u.UID || os.Getgid() != u.GID || os.Getegid() != u.GID {
		return fmt.Errorf("still uid %d/%d gid %d/%d after the switch",
			os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid())
	}
	if u.UID != 0 {
		if err := syscall.Setuid(0); err == nil {
			return errors.New("switching back to root succeeded")
		}
		if err := syscall.Seteuid(0); err == nil {
			return errors.New("switching back to root succeeded")
		}
	}
	return nil
}
