package dockerfile

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestApplyChanges runs --change lists on a fixed config. The real docker
// commit --change is the oracle of image's TestChangesAgainstDockerCommit;
// this table also pins what Docker 20.10 cannot show (STOPSIGNAL, taken
// from v23 on) and runs where no dockerd is.
func TestApplyChanges(t *testing.T) {
	base := v1.Config{Env: []string{"A=1", "PATH=/bin"}, Cmd: []string{"run"}, Entrypoint: []string{"/init"},
		ExposedPorts: map[string]struct{}{"22/tcp": {}}, Labels: map[string]string{"l": "v"}}
	ports := func(ps ...string) map[string]struct{} {
		m := map[string]struct{}{"22/tcp": {}}
		for _, p := range ps {
			m[p] = struct{}{}
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		changes []string
		want    func(*v1.Config)
		wantErr string // a part of the error, "" for none
	}{
		{"none", nil, func(*v1.Config) {}, ""},
		{"expose-range", []string{"EXPOSE 8000-8002"}, func(c *v1.Config) {
			c.ExposedPorts = ports("8000/tcp", "8001/tcp", "8002/tcp")
		}, ""},
		{"expose-protocols", []string{"EXPOSE 53/udp 80"}, func(c *v1.Config) { c.ExposedPorts = ports("53/udp", "80/tcp") }, ""},
		{"expose-upper-proto-and-host-part", []string{"EXPOSE 90/SCTP 127.0.0.1:8080:80"}, func(c *v1.Config) {
			c.ExposedPorts = ports("90/sctp", "80/tcp")
		}, ""},
		{"expose-from-env-words", []string{"ENV P=\"7 8\"", "EXPOSE $P"}, func(c *v1.Config) {
			c.Env = append(c.Env, "P=7 8")
			c.ExposedPorts = ports("7/tcp", "8/tcp")
		}, ""},
		{"expose-bad-proto", []string{"EXPOSE 80/xyz"}, nil, "invalid proto: xyz"},
		{"expose-bad-range", []string{"EXPOSE 9-8"}, nil, "invalid containerPort: 9-8"},
		{"stopsignal-name", []string{"STOPSIGNAL SIGKILL"}, func(c *v1.Config) { c.StopSignal = "SIGKILL" }, ""},
		{"stopsignal-name-no-sig", []string{"STOPSIGNAL usr1"}, func(c *v1.Config) { c.StopSignal = "usr1" }, ""},
		{"stopsignal-number", []string{"STOPSIGNAL 9"}, func(c *v1.Config) { c.StopSignal = "9" }, ""},
		{"stopsignal-from-env", []string{"ENV S=TERM", "STOPSIGNAL SIG$S"}, func(c *v1.Config) {
			c.Env = append(c.Env, "S=TERM")
			c.StopSignal = "SIGTERM"
		}, ""},
		{"stopsignal-invalid", []string{"STOPSIGNAL SIGNOPE"}, nil, `change "STOPSIGNAL SIGNOPE": invalid signal: SIGNOPE`},
		{"stopsignal-zero", []string{"STOPSIGNAL 0"}, nil, "invalid signal: 0"},
		{"env-replace-then-use", []string{"ENV A=2", "ENV B=$A C=${A:-x} D=${NOPE:-x}", "LABEL x=$A"}, func(c *v1.Config) {
			c.Env = []string{"A=2", "PATH=/bin", "B=2", "C=2", "D=x"}
			c.Labels = map[string]string{"l": "v", "x": "2"}
		}, ""},
		{"env-expands-before-instruction", []string{"ENV A=2 B=$A"}, func(c *v1.Config) { c.Env = []string{"A=2", "PATH=/bin", "B=1"} }, ""},
		{"env-legacy-form", []string{"ENV K some  words $A"}, func(c *v1.Config) { c.Env = append(c.Env, "K=some  words 1") }, ""},
		{"env-unterminated-quote", []string{`ENV A="x`}, nil, "matching double-quote"},
		{"env-required-unset", []string{"ENV A=${X:?unset}"}, nil, "X: unset"},
		{"entrypoint-clears-cmd", []string{`ENTRYPOINT ["/x"]`}, func(c *v1.Config) { c.Entrypoint = []string{"/x"}; c.Cmd = nil }, ""},
		{"cmd-then-entrypoint-keeps-cmd", []string{`CMD ["a"]`, "ENTRYPOINT b"}, func(c *v1.Config) {
			c.Cmd = []string{"a"}
			c.Entrypoint = []string{"/bin/sh", "-c", "b"}
		}, ""},
		{"cmd-bare-is-the-shell", []string{"CMD"}, func(c *v1.Config) { c.Cmd = []string{"/bin/sh", "-c"} }, ""},
		{"entrypoint-empty-is-nil", []string{"ENTRYPOINT []"}, func(c *v1.Config) { c.Entrypoint = nil; c.Cmd = nil }, ""},
		{"workdir", []string{"WORKDIR /a", "WORKDIR b/../c", "WORKDIR /x/../y/"}, func(c *v1.Config) { c.WorkingDir = "/x/../y/" }, ""},
		{"workdir-relative", []string{"WORKDIR /a", "WORKDIR b/../c"}, func(c *v1.Config) { c.WorkingDir = "/a/c" }, ""},
		{"volume-trimmed", []string{`VOLUME [" /v ", "/w"]`}, func(c *v1.Config) { c.Volumes = map[string]struct{}{"/v": {}, "/w": {}} }, ""},
		{"volume-empty", []string{`VOLUME ["/a", ""]`}, nil, "VOLUME specified can not be an empty string"},
		{"healthcheck", []string{"HEALTHCHECK --interval=1m --start-period=2s CMD true"}, func(c *v1.Config) {
			c.Healthcheck = &v1.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Interval: time.Minute, StartPeriod: 2 * time.Second}
		}, ""},
		{"healthcheck-start-interval-refused", []string{"HEALTHCHECK --start-interval=1s CMD true"}, nil, "HEALTHCHECK --start-interval is only taken by BuildKit-mode builds"},
		{"healthcheck-none-ignores-flags", []string{"HEALTHCHECK --retries=2 NONE"}, func(c *v1.Config) {
			c.Healthcheck = &v1.HealthConfig{Test: []string{"NONE"}}
		}, ""},
		{"onbuild", []string{"ONBUILD RUN echo $A"}, func(c *v1.Config) { c.OnBuild = []string{"RUN echo $A"} }, ""},
		{"user", []string{"USER ${A}000"}, func(c *v1.Config) { c.User = "1000" }, ""},
		{"continuation-and-comment", []string{"LABEL a=1 \\", "  b=2", "# note"}, func(c *v1.Config) {
			c.Labels = map[string]string{"l": "v", "a": "1", "b": "2"}
		}, ""},
		{"run-not-allowed", []string{"RUN echo hi"}, nil, "run is not a valid change command"},
		{"copy-not-allowed", []string{"COPY a b"}, nil, "copy is not a valid change command"},
		{"names-checked-first", []string{"STOPSIGNAL NOPE", "FROM scratch"}, nil, "from is not a valid change command"},
		{"syntax", []string{"HEALTHCHECK --retries=x CMD true"}, nil, `change "HEALTHCHECK --retries=x CMD true": --retries: strconv.Atoi`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := *base.DeepCopy()
			got, err := ApplyChanges(base, tc.changes)
			if !reflect.DeepEqual(base, before) {
				t.Fatalf("ApplyChanges modified its input: %+v", base)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q (result %+v)", err, tc.wantErr, got)
				}
				if strings.Contains(err.Error(), "Dockerfile:") {
					t.Errorf("a --change error names a Dockerfile line: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := *base.DeepCopy()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestApplyChangesWithoutStopSignal(t *testing.T) {
	_, err := ApplyChanges(v1.Config{}, []string{"ENV A=1", "stopsignal 9"}, WithoutStopSignal())
	var ice *InvalidChangeError
	if !errors.As(err, &ice) || ice.Instruction != "stopsignal" || !errors.Is(err, ErrInvalidChange) {
		t.Fatalf("error %v, want stopsignal's InvalidChangeError", err)
	}
	if err.Error() != "stopsignal is not a valid change command" {
		t.Errorf("error text %q is not Docker 20.10's", err)
	}
	if _, err := ApplyChanges(v1.Config{}, []string{"ENV A=1"}, WithoutStopSignal()); err != nil {
		t.Errorf("ENV refused: %v", err)
	}
}
