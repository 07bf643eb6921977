package builder

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layercommit/layercommit/internal/oracle"
)

// metadataCases are metadata instructions built after "FROM base": the
// build path of the cases image's TestChangesAgainstDockerCommit runs
// through commit --change (both go through dockerfile.Dispatcher).
var metadataCases = []struct {
	name    string
	body    string
	want    func(*v1.Config) // on the base's config; nil for an error
	wantErr string
}{
	{"expose-range", "EXPOSE 8000-8002", func(c *v1.Config) {
		c.ExposedPorts = map[string]struct{}{"8000/tcp": {}, "8001/tcp": {}, "8002/tcp": {}}
	}, ""},
	{"expose-protocols", "EXPOSE 53/udp 80", func(c *v1.Config) {
		c.ExposedPorts = map[string]struct{}{"53/udp": {}, "80/tcp": {}}
	}, ""},
	{"expose-bad-proto", "EXPOSE 80/xyz", nil, "Dockerfile:2: invalid proto: xyz"},
	{"stopsignal-name", "STOPSIGNAL SIGUSR2", func(c *v1.Config) { c.StopSignal = "SIGUSR2" }, ""},
	{"stopsignal-number", "STOPSIGNAL 9", func(c *v1.Config) { c.StopSignal = "9" }, ""},
	{"stopsignal-invalid", "STOPSIGNAL SIGNOPE", nil, "Dockerfile:2: invalid signal: SIGNOPE"},
	{"env-replacement", "ENV A=1\nENV B=$A C=${A:-x}\nLABEL x=$A", func(c *v1.Config) {
		c.Env = append(c.Env, "A=1", "B=1", "C=1")
		c.Labels = map[string]string{"x": "1"}
	}, ""},
	{"env-expands-before-instruction", "ENV A=2 B=$A", func(c *v1.Config) { c.Env = append(c.Env, "A=2", "B=") }, ""},
	{"env-from-arg", "ARG V=3\nENV W=$V X=${V:+set}\nLABEL v=$V", func(c *v1.Config) {
		c.Env = append(c.Env, "W=3", "X=set")
		c.Labels = map[string]string{"v": "3"}
	}, ""},
	{"cmd-then-entrypoint", "CMD [\"a\"]\nENTRYPOINT b", func(c *v1.Config) {
		c.Cmd = []string{"a"}
		c.Entrypoint = []string{"/bin/sh", "-c", "b"}
	}, ""},
	{"cmd-bare", "CMD", func(c *v1.Config) { c.Cmd = []string{"/bin/sh", "-c"} }, ""},
	{"healthcheck", "HEALTHCHECK --interval=5s --retries=2 CMD true", func(c *v1.Config) {
		c.Healthcheck = &v1.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Interval: 5 * time.Second, Retries: 2}
	}, ""},
	{"workdir-unclean", "WORKDIR /a/../b/", func(c *v1.Config) { c.WorkingDir = "/a/../b/" }, ""},
	{"shell-user-volume-onbuild", "SHELL [\"/bin/sh\", \"-ec\"]\nCMD echo hi\nUSER 1:1\nVOLUME /v\nONBUILD RUN true", func(c *v1.Config) {
		c.Shell = []string{"/bin/sh", "-ec"}
		c.Cmd = []string{"/bin/sh", "-ec", "echo hi"}
		c.User = "1:1"
		c.Volumes = map[string]struct{}{"/v": {}}
		c.OnBuild = []string{"RUN true"}
	}, ""},
}

// buildMetadata builds "FROM base\n"+body on base with the legacy
// builder's rules (Options.Legacy: the cases pin Docker 20.10's) and
// returns the image's config file.
func buildMetadata(t *testing.T, base, body string) (*v1.ConfigFile, error) {
	t.Helper()
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM base\n" + body + "\n"})
	out := filepath.Join(t.TempDir(), "out.tar")
	if _, err := testBuild(t, Options{ContextDir: ctxDir, NoCache: true, Legacy: true, BuildContexts: map[string]string{"base": base}},
		"docker-archive:"+out); err != nil {
		return nil, err
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf, nil
}

// TestBuildMetadata builds each metadata case and compares the config
// with the case's: EXPOSE ranges and protocols, STOPSIGNAL checked, ENV
// expanded with the Env before the instruction.
func TestBuildMetadata(t *testing.T) {
	base := busyboxImage(t)
	for _, tc := range metadataCases {
		t.Run(tc.name, func(t *testing.T) {
			cf, err := buildMetadata(t, base, tc.body)
			if tc.want == nil {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want prefix %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := v1.Config{Env: []string{defaultPath}}
			tc.want(&want)
			if got := metadataFields(cf.Config); !reflect.DeepEqual(got, metadataFields(want)) {
				t.Errorf("config:\n got  %s\n want %s", got, metadataFields(want))
			}
		})
	}
}

// TestBuildMetadataMatchesDocker builds each metadata case with Build and
// with the real `docker build` (legacy builder) and compares the config
// and the created_by of every history entry.
func TestBuildMetadataMatchesDocker(t *testing.T) {
	d := oracle.NewDocker(t)
	t.Setenv("DOCKER_BUILDKIT", "0")
	base := filepath.Join(t.TempDir(), "base.tar")
	d.Run(t, "save", "-o", base, d.Base)
	for _, tc := range metadataCases {
		t.Run(tc.name, func(t *testing.T) {
			cf, err := buildMetadata(t, "docker-archive:"+base, tc.body)
			dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + d.Base + "\n" + tc.body + "\n"})
			out, stderr, derr := d.Try("build", "-q", "--no-cache", "--network", "none", dir)
			if err != nil || derr != nil {
				if err == nil || derr == nil {
					t.Fatalf("ours: %v; docker build: %v (%s)", err, derr, strings.TrimSpace(stderr))
				}
				return
			}
			id := strings.TrimSpace(out)
			t.Cleanup(func() { d.Try("rmi", id) })
			var theirs v1.Config
			if err := json.Unmarshal([]byte(d.Run(t, "image", "inspect", "--format", "{{json .Config}}", id)), &theirs); err != nil {
				t.Fatal(err)
			}
			if a, b := metadataFields(cf.Config), metadataFields(theirs); a != b {
				t.Errorf("config:\n ours   %s\n docker %s", a, b)
			}
			var ours []string
			for i := len(cf.History) - 1; i >= 0; i-- {
				ours = append(ours, cf.History[i].CreatedBy)
			}
			if a, b := strings.TrimSpace(strings.Join(ours, "\n")), d.Run(t, "history", "--no-trunc", "--format", "{{.CreatedBy}}", id); a != b {
				t.Errorf("history (newest first):\n ours:\n%s\n docker's:\n%s", a, b)
			}
		})
	}
}

// metadataFields renders the config fields the metadata instructions
// set, with nil and empty collections alike, as JSON.
func metadataFields(c v1.Config) string {
	b, _ := json.Marshal(struct {
		Env, Cmd, Entrypoint, OnBuild, Shell []string `json:",omitempty"`
		User, WorkingDir, StopSignal         string   `json:",omitempty"`
		ExposedPorts, Volumes                map[string]struct{}
		Labels                               map[string]string
		Healthcheck                          *v1.HealthConfig
	}{c.Env, c.Cmd, c.Entrypoint, c.OnBuild, c.Shell, c.User, c.WorkingDir, c.StopSignal,
		nonEmpty(c.ExposedPorts), nonEmpty(c.Volumes), nonEmptyLabels(c.Labels), c.Healthcheck})
	return string(b)
}

func nonEmpty(m map[string]struct{}) map[string]struct{} {
	if len(m) == 0 {
		return nil
	}
	return m
}

func nonEmptyLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
