package dockerroot_test

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/internal/oracle"
)

// dockerCreated reads the created time dockerd gave an image.
func dockerCreated(t *testing.T, raw []byte) time.Time {
	t.Helper()
	var c struct {
		Created time.Time `json:"created"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.Created
}

// TestCommitConfigMatchesDockerd commits containers with the real dockerd
// and rebuilds the image config from the data root alone: the bytes, and
// so the image ID, must be the same.
func TestCommitConfigMatchesDockerd(t *testing.T) {
	d := oracle.NewDocker(t)
	root, err := dockerroot.Open(d.Root)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		run     []string
		commit  []string
		changes []string
	}{
		{name: "plain", run: []string{"sh", "-c", "echo hi > /data/x; touch /ready; exec sleep 3600"}},
		{name: "message and author", run: []string{"sh", "-c", "rm /data/basefile; touch /ready; exec sleep 3600"},
			commit: []string{"-m", "a message <&>", "-a", "Jane Doe <jane@example.com>"}},
		{name: "changes", run: []string{"sh", "-c", "mkdir -p /srv/a; touch /ready; exec sleep 3600"},
			commit: []string{"-m", "with changes"},
			changes: []string{"ENV FOO=bar", "EXPOSE 80/tcp", "WORKDIR /srv", "LABEL a=b", "USER nobody",
				"CMD [\"/bin/sh\", \"-c\", \"echo hi\"]", "VOLUME /data", "ENTRYPOINT [\"/bin/env\"]",
				"HEALTHCHECK --interval=5s --retries=2 CMD true", "ONBUILD RUN true"}},
		{name: "empty diff", run: []string{"sleep", "3600"}},
		{name: "control characters", run: []string{"sh", "-c", "echo \b\f; touch /ready; exec sleep 3600"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := d.Run(t, append([]string{"run", "-d", "--network", "none", "-e", "X=1", d.Base}, tc.run...)...)
			t.Cleanup(func() { d.Try("rm", "-f", id) })
			if tc.name != "empty diff" {
				d.WaitReady(t, id)
			}
			args := []string{"commit"}
			args = append(args, tc.commit...)
			for _, c := range tc.changes {
				args = append(args, "-c", c)
			}
			imageID := d.Run(t, append(args, id)...)
			t.Cleanup(func() { d.Try("rmi", imageID) })
			want, err := root.RawConfig(mustHash(t, imageID))
			if err != nil {
				t.Fatal(err)
			}

			c, err := root.Container(id[:12])
			if err != nil {
				t.Fatal(err)
			}
			cc, err := dockerroot.DecodeContainerConfig(c.Config)
			if err != nil {
				t.Fatal(err)
			}
			cfg, containerCfg, err := dockerroot.ApplyChanges(cc, tc.changes)
			if err != nil {
				t.Fatal(err)
			}
			parent, err := root.RawConfig(c.Image)
			if err != nil {
				t.Fatal(err)
			}
			diffID, _, err := diff.Write(context.Background(), io.Discard, diff.Overlay(c.UpperDir), diff.WithCompat(compat.Docker2010))
			if err != nil {
				t.Fatal(err)
			}
			cm := dockerroot.CommitConfig{
				Parent: parent, ContainerID: c.ID, Container: containerCfg, Config: cfg, OS: c.OS,
				Created: dockerCreated(t, want), DockerVersion: compat.Docker2010.DockerVersion,
				DiffID: diffID, Empty: diffID == diff.EmptyDiffID,
			}
			for i := 0; i+1 < len(tc.commit); i += 2 {
				switch tc.commit[i] {
				case "-m":
					cm.Comment = tc.commit[i+1]
				case "-a":
					cm.Author = tc.commit[i+1]
				}
			}
			got, err := cm.Encode(compat.Docker2010)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				os.WriteFile(filepath.Join(t.TempDir(), "x"), got, 0o644)
				t.Fatalf("config differs from dockerd's:\n got  %s\n want %s", got, want)
			}
			if tc.name == "empty diff" && !strings.Contains(string(got), `"empty_layer":true`) {
				t.Error("an empty diff must give an empty_layer history entry")
			}
		})
	}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
