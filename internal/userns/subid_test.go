package userns

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMappings: rootless podman's mapping from subuid and subgid files:
// the caller at 0, then every range of the user (by name or by number)
// in file order from 1; other users' lines, comments and blank lines are
// ignored; a malformed line or no range is an error naming the file.
func TestMappings(t *testing.T) {
	uid := os.Getuid()
	if uid != 0 {
		t.Skip("the names below assume uid 0 is root")
	}
	for _, tc := range []struct {
		name, subuid, subgid string
		uids, gids           []IDMap
		err                  string
	}{
		{name: "one range", subuid: "root:100000:65536\n", subgid: "root:200000:1000\n",
			uids: []IDMap{{0, 0, 1}, {1, 100000, 65536}}, gids: []IDMap{{0, 0, 1}, {1, 200000, 1000}}},
		{name: "two ranges, by name and number, others skipped",
			subuid: "# comment\nalice:50000:10\nroot:100000:100\n\n0:300000:50\n", subgid: "0:7000:5\n",
			uids: []IDMap{{0, 0, 1}, {1, 100000, 100}, {101, 300000, 50}}, gids: []IDMap{{0, 0, 1}, {1, 7000, 5}}},
		{name: "no subuid range", subuid: "alice:50000:10\n", subgid: "root:1:1\n", err: "no subordinate ids: user root has no range in SUBUID: add a range as root (usermod --add-subuids"},
		{name: "no subgid range", subuid: "root:50000:10\n", subgid: "", err: "user root has no range in SUBGID"},
		{name: "malformed", subuid: "root:50000\n", subgid: "root:1:1\n", err: "SUBUID:1: want NAME:START:COUNT"},
		{name: "zero count", subuid: "root:50000:0\n", subgid: "root:1:1\n", err: "SUBUID:1: bad range"},
		{name: "overflow", subuid: "root:4294967000:1000\n", subgid: "root:1:1\n", err: "SUBUID:1: bad range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := Config{SubUIDFile: filepath.Join(dir, "subuid"), SubGIDFile: filepath.Join(dir, "subgid")}
			if err := os.WriteFile(c.SubUIDFile, []byte(tc.subuid), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(c.SubGIDFile, []byte(tc.subgid), 0o644); err != nil {
				t.Fatal(err)
			}
			uids, gids, err := Mappings(c, uid, 0)
			if tc.err != "" {
				want := strings.NewReplacer("SUBUID", c.SubUIDFile, "SUBGID", c.SubGIDFile).Replace(tc.err)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want it to contain %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(uids, tc.uids) || !reflect.DeepEqual(gids, tc.gids) {
				t.Fatalf("maps = %v %v, want %v %v", uids, gids, tc.uids, tc.gids)
			}
		})
	}
}

// TestDiagnose: a refused clone(CLONE_NEWUSER) is explained from the
// sysctls that can forbid it, each with its fix; with none of them set
// EPERM is blamed on seccomp or a security module. (The kernel's own
// refusal is TestForbidden.)
func TestDiagnose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		errno error
		want  string
	}{
		{"debian sysctl", map[string]string{"kernel/unprivileged_userns_clone": "0\n", "user/max_user_namespaces": "1000\n"}, unix.EPERM,
			"sysctl kernel.unprivileged_userns_clone is 0 (as root: sysctl -w kernel.unprivileged_userns_clone=1)"},
		{"max zero", map[string]string{"user/max_user_namespaces": "0\n"}, unix.ENOSPC,
			"sysctl user.max_user_namespaces is 0 (as root: sysctl -w user.max_user_namespaces=15000)"},
		{"apparmor", map[string]string{"kernel/apparmor_restrict_unprivileged_userns": "1\n", "user/max_user_namespaces": "1000\n"}, unix.EPERM,
			"AppArmor restricts unprivileged user namespaces"},
		{"limit reached", map[string]string{"user/max_user_namespaces": "3\n"}, unix.ENOSPC,
			"the limit user.max_user_namespaces (3) or the nesting depth is reached"},
		{"seccomp", map[string]string{"user/max_user_namespaces": "1000\n", "kernel/unprivileged_userns_clone": "1\n"}, unix.EPERM,
			"a seccomp filter or security module forbids unprivileged user namespaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, v := range tc.files {
				p := filepath.Join(dir, n)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := diagnose(&os.PathError{Op: "fork/exec", Path: "/bin/x", Err: tc.errno}, dir)
			if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line with %q", err, tc.want)
			}
		})
	}
	if err := diagnose(unix.ENOENT, t.TempDir()); errors.Is(err, ErrForbidden) {
		t.Fatalf("ENOENT blamed on the kernel: %v", err)
	}
}
