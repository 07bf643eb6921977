package image

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/internal/oracle"
)

// changeCases are --change lists run both by the real `docker commit
// --change` (Docker 20.10) and by ValidateChanges with the docker-20.10
// profile and CommitConfig (dockerfile.ApplyChanges + merge) on the same
// container config.
var changeCases = []struct {
	name    string
	changes []string
}{
	{"none", nil},
	{"env", []string{"ENV FOO=bar"}},
	{"env-replace-and-expand", []string{`ENV A=2 X="a b" Y=$A-${A:-z}-${NOPE:-dflt}-${A:+set} Z='$A'`}},
	{"env-legacy", []string{"ENV LEG value with  spaces"}},
	{"env-uses-earlier", []string{"ENV P=one", `ENV Q=${P}two`}},
	{"cmd-exec", []string{`CMD ["/bin/echo", "x y"]`}},
	{"cmd-shell", []string{"CMD echo $HOME && ls"}},
	{"entrypoint-exec", []string{`ENTRYPOINT ["/bin/cat"]`}},
	{"entrypoint-shell", []string{"ENTRYPOINT exec cat"}},
	{"cmd-then-entrypoint", []string{`CMD ["a"]`, `ENTRYPOINT ["b"]`}},
	{"entrypoint-then-cmd", []string{`ENTRYPOINT ["b"]`, `CMD ["a"]`}},
	{"expose", []string{"EXPOSE 8080 53/udp 7000-7002"}},
	{"expose-range", []string{"EXPOSE 8000-8002"}},
	{"expose-udp-and-plain", []string{"EXPOSE 53/udp 80"}},
	{"expose-upper-proto-and-host-part", []string{"EXPOSE 90/SCTP 127.0.0.1:8080:81"}},
	{"expose-bad-proto", []string{"EXPOSE 80/xyz"}},
	{"expose-bad-range", []string{"EXPOSE 9-8"}},
	{"stopsignal-name", []string{"STOPSIGNAL SIGUSR2"}},
	{"stopsignal-number", []string{"STOPSIGNAL 9"}},
	{"stopsignal-invalid", []string{"STOPSIGNAL SIGNOPE"}},
	{"env-replacement", []string{"ENV A=1", "ENV B=$A C=${A:-x}", "LABEL x=$A"}},
	{"env-expands-before-instruction", []string{"ENV A=2 B=$A"}},
	{"cmd-bare", []string{"CMD"}},
	{"cmd-empty", []string{"CMD []"}},
	{"entrypoint-empty", []string{"ENTRYPOINT []"}},
	{"workdir-unclean", []string{"WORKDIR /a/../b/"}},
	{"volume-trimmed", []string{`VOLUME [" /v "]`}},
	{"healthcheck-none-flags", []string{"HEALTHCHECK --retries=2 NONE"}},
	{"env-required-unset", []string{"ENV A=${NOPE:?unset}"}},
	{"volume", []string{"VOLUME /data", `VOLUME ["/a", "/b"]`}},
	{"label", []string{`LABEL a=b "c d"=e`, "LABEL legacy some value"}},
	{"user", []string{"USER 1000:1000"}},
	{"workdir", []string{"WORKDIR rel", "WORKDIR sub/dir"}},
	{"workdir-abs-env", []string{"ENV W=/w", "WORKDIR $W/x"}},
	{"healthcheck", []string{"HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD wget -q localhost"}},
	{"healthcheck-exec", []string{`HEALTHCHECK CMD ["/bin/true"]`}},
	{"healthcheck-none", []string{"HEALTHCHECK NONE"}},
	{"onbuild", []string{"ONBUILD RUN echo hi", "onbuild ENV X=1"}},
	{"lowercase-and-continuation", []string{"env a=1 \\\n  b=2", "# a comment", "expose 99"}},
	{"invalid-run", []string{"RUN echo hi"}},
	{"invalid-from", []string{"FROM scratch"}},
	{"invalid-onbuild-onbuild", []string{"ONBUILD ONBUILD CMD x"}},
}

func TestChangesAgainstDockerCommit(t *testing.T) {
	d := oracle.NewDocker(t)
	containers := map[string][]string{
		"plain": {"create", d.Base, "/bin/sh", "-c", "echo hi"},
		"rich": {"create", "-e", "A=1", "-e", "PATH=/usr/bin:/bin", "-l", "l1=v1", "--expose", "80",
			"-v", "/vol", "-w", "/work", "-u", "nobody", "--entrypoint", "/bin/echo",
			"--health-cmd", "true", "--health-interval", "5s", "--stop-signal", "SIGUSR1", d.Base, "hello", "world"},
	}
	for cname, create := range containers {
		id := d.Run(t, create...)
		t.Cleanup(func() { d.Try("rm", "-f", "-v", id) })
		var insp []struct{ Config v1.Config }
		must(t, json.Unmarshal([]byte(d.Run(t, "container", "inspect", id)), &insp))
		container := insp[0].Config
		for _, tc := range changeCases {
			t.Run(cname+"/"+tc.name, func(t *testing.T) {
				args := []string{"commit"}
				for _, c := range tc.changes {
					args = append(args, "--change", c)
				}
				out, stderr, derr := d.Try(append(args, id)...)
				err := ValidateChanges(tc.changes, compat.Docker2010)
				var ours v1.Config
				if err == nil {
					ours, err = CommitConfig(container, tc.changes)
				}
				if derr != nil || err != nil {
					if derr == nil || err == nil {
						t.Fatalf("docker commit error %v (%s), ours %v", derr, strings.TrimSpace(stderr), err)
					}
					return
				}
				imageID := strings.TrimSpace(out)
				t.Cleanup(func() { d.Try("rmi", imageID) })
				var img []struct{ Config v1.Config }
				must(t, json.Unmarshal([]byte(d.Run(t, "image", "inspect", imageID)), &img))
				want := normalize(img[0].Config)
				if got := normalize(ours); !reflect.DeepEqual(got, want) {
					g, _ := json.Marshal(got)
					w, _ := json.Marshal(want)
					t.Fatalf("config differs:\nours:   %s\ndocker: %s", g, w)
				}
			})
		}
	}
}

// normalize makes nil and empty maps and slices compare equal, as they
// are in JSON after docker's own round trip.
func normalize(c v1.Config) v1.Config {
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	if len(c.ExposedPorts) == 0 {
		c.ExposedPorts = nil
	}
	if len(c.Volumes) == 0 {
		c.Volumes = nil
	}
	if len(c.OnBuild) == 0 {
		c.OnBuild = nil
	}
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
