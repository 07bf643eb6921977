package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/layercommit/layercommit/internal/oracle"
)

func TestBuildCommand(t *testing.T) {
	oracle.Root(t)
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM scratch\nARG WHO\nCOPY f /f\nLABEL who=$WHO\nCMD [\"x\"]\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "f"), []byte("data\n"), 0o644)
	state := t.TempDir()
	out := filepath.Join(t.TempDir(), "layout")
	// Flags may follow CONTEXT; the last line on stdout is the image ID.
	code, stdout, stderr := cli("build", "--state-dir", state, "--source-date-epoch", "0", ctx, "--build-arg", "WHO=me", "-o", "oci:"+out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	id := lines[len(lines)-1]
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("last line %q is not an image ID", id)
	}
	if !strings.Contains(stderr, "Step 3/5 : COPY f /f") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
	// Same inputs and epoch, no cache: the same ID.
	code, stdout2, stderr := cli("build", "-q", "--no-cache", "--state-dir", state, "--source-date-epoch", "0", "--build-arg", "WHO=me", "-o", "oci:"+out, ctx)
	if code != 0 || strings.TrimSpace(stdout2) != id {
		t.Errorf("rebuild: exit %d, %q, want %s: %s", code, stdout2, id, stderr)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-t", "Bad:Name", ctx}, "layercommit: bad -t: bad image name \"Bad:Name\": invalid reference format: repository name (library/Bad) must be lowercase\n"},
		{[]string{"-o", "oci:" + out, "--network", "bridge", ctx}, "layercommit: build: bad --network \"bridge\" (default, none or host)\n"},
		{[]string{"-o", "oci:" + out, "--allow", "network", ctx}, "layercommit: build: bad --allow \"network\" (network.host or security.insecure)\n"},
		{[]string{"-o", "oci:" + out, "--source-date-epoch", "soon", ctx}, "layercommit: build: bad --source-date-epoch \"soon\"\n"},
		{[]string{"-o", "oci:" + out, "--platform", "linux/", ctx}, "layercommit: bad platform \"linux/\": \"\" is an invalid component of \"linux/\": platform specifier component must match \"^[A-Za-z0-9_.-]+$\": invalid argument\n"},
		{[]string{"-o", "oci:" + out, "-f", filepath.Join(ctx, "nope"), ctx}, "layercommit: reading Dockerfile: open " + filepath.Join(ctx, "nope") + ": no such file or directory\n"},
	} {
		code, _, stderr := cli(append([]string{"build", "--state-dir", state}, tc.args...)...)
		if code == 0 || stderr != tc.want {
			t.Errorf("build %v: exit %d, stderr %q, want %q", tc.args, code, stderr, tc.want)
		}
	}

	// --platform sets the image's platform and TARGETARCH.
	pctx := t.TempDir()
	os.WriteFile(filepath.Join(pctx, "Dockerfile"), []byte("FROM scratch\nARG TARGETARCH\nLABEL arch=$TARGETARCH\n"), 0o644)
	playout := filepath.Join(t.TempDir(), "arm")
	if code, _, stderr := cli("build", "-q", "--state-dir", state, "--platform", "linux/arm64", "-o", "oci:"+playout, pctx); code != 0 {
		t.Fatalf("--platform linux/arm64: exit %d: %s", code, stderr)
	}
	idx, err := layout.ImageIndexFromPath(playout)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("layout %s: %v", playout, err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if cf, err := img.ConfigFile(); err != nil || cf.Architecture != "arm64" || cf.OS != "linux" || cf.Config.Labels["arch"] != "arm64" {
		t.Errorf("--platform linux/arm64 gave %+v (%v)", cf, err)
	}

	// SOURCE_DATE_EPOCH is parsed once, strictly, by the CLI.
	for _, v := range []string{"12abc", "-1", "1e9", " 12"} {
		t.Setenv("SOURCE_DATE_EPOCH", v)
		code, _, stderr := cli("build", "--state-dir", state, "-o", "oci:"+out, ctx)
		if want := "layercommit: build: bad SOURCE_DATE_EPOCH " + strconv.Quote(v) + "\n"; code == 0 || stderr != want {
			t.Errorf("SOURCE_DATE_EPOCH=%q: exit %d, stderr %q, want %q", v, code, stderr, want)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	if code, stdout3, stderr := cli("build", "-q", "--no-cache", "--state-dir", state, "--build-arg", "WHO=me", "-o", "oci:"+out, ctx); code != 0 || strings.TrimSpace(stdout3) != id {
		t.Errorf("SOURCE_DATE_EPOCH=0 build: exit %d, %q, want %s (the --source-date-epoch 0 ID): %s", code, stdout3, id, stderr)
	}
	os.Unsetenv("SOURCE_DATE_EPOCH")

	// A Dockerfile error names its line, and nothing is written.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "Dockerfile"), []byte("FROM scratch\nBOGUS x\n"), 0o644)
	dest := filepath.Join(t.TempDir(), "never")
	code, _, stderr = cli("build", "--state-dir", state, "-o", "oci:"+dest, bad)
	if code == 0 || stderr != "layercommit: Dockerfile:2: unknown instruction: BOGUS\n" {
		t.Errorf("bad Dockerfile: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("a failed build left %s behind", dest)
	}
}
