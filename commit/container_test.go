package commit_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/commit"
	"github.com/layercommit/layercommit/compat"
	"github.com/layercommit/layercommit/dockerroot"
	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/internal/oracle"
)

// createdOf reads the created time dockerd gave the image id.
func createdOf(t *testing.T, root, id string) time.Time {
	t.Helper()
	r, err := dockerroot.Open(root)
	must(t, err)
	h, err := v1.NewHash(id)
	must(t, err)
	raw, err := r.RawConfig(h)
	must(t, err)
	var c struct {
		Created time.Time `json:"created"`
	}
	must(t, json.Unmarshal(raw, &c))
	return c.Created
}

// TestCommitContainerSameIDAsDockerd commits running containers of the
// shared dockerd with and without a comment, an author and changes, from
// the data root with no daemon involved, into an OCI layout: the image ID
// must be the one docker commit gives for the same created time, and the
// image must validate.
func TestCommitContainerSameIDAsDockerd(t *testing.T) {
	d := oracle.NewDocker(t)
	p, err := compat.Lookup("docker-20.10")
	must(t, err)
	for _, tc := range []struct {
		name            string
		author, comment string
		changes         []string
	}{
		{"plain", "", "", nil},
		{"message and author", "Ann <ann@example.com>", "saved", nil},
		{"changes", "", "changed", []string{"ENV A=1 B=2", `CMD ["sh"]`, "EXPOSE 8080", "LABEL x=y", "WORKDIR /data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := d.Run(t, "run", "-d", "--network", "none", d.Base, "sh", "-c", "echo x > /data/x; rm /etc/group; touch /ready; exec sleep 3600")
			t.Cleanup(func() { d.Try("rm", "-f", id) })
			d.WaitReady(t, id)
			args := []string{"commit"}
			if tc.author != "" {
				args = append(args, "-a", tc.author)
			}
			if tc.comment != "" {
				args = append(args, "-m", tc.comment)
			}
			for _, c := range tc.changes {
				args = append(args, "-c", c)
			}
			ref := d.Run(t, append(args, id)...)
			t.Cleanup(func() { d.Try("rmi", ref) })

			to := "oci:" + filepath.Join(t.TempDir(), "layout") + ":c"
			got, err := commit.CommitContainer(context.Background(), commit.ContainerRequest{
				Container: id[:12], To: to, Changes: tc.changes, Author: tc.author, Comment: tc.comment,
				Created: createdOf(t, d.Root, ref), Pause: true,
				Output: commit.Output{Compat: p, Options: []export.Option{export.WithDockerRoot(d.Root)}},
			})
			must(t, err)
			if got.String() != ref {
				t.Fatalf("CommitContainer gave %s, docker commit gave %s", got, ref)
			}
			readBack(t, to, got)
		})
	}
}

// TestCommitContainerNotFound: a container that is not in the data root
// fails, naming it, before anything is written.
func TestCommitContainerNotFound(t *testing.T) {
	d := oracle.NewDocker(t)
	out := filepath.Join(t.TempDir(), "layout")
	_, err := commit.CommitContainer(context.Background(), commit.ContainerRequest{
		Container: strings.Repeat("f", 64), To: "oci:" + out,
		Output: commit.Output{Options: []export.Option{export.WithDockerRoot(d.Root)}},
	})
	if !errors.Is(err, dockerroot.ErrNotFound) {
		t.Fatalf("CommitContainer of a missing container: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed commit made its destination: %v", err)
	}
}
