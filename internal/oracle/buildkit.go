package oracle

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildKit is the buildkitd that scripts/oracles.sh built and started (the
// OCI worker, runc, overlayfs), with a busybox base in a loopback registry.
type BuildKit struct {
	Host     string // buildctl --addr, unix://...
	Buildctl string // the buildctl client
	Base     string // the busybox base as BuildKit pulls it: 127.0.0.1:PORT/REPO:TAG
}

// NewBuildKit returns the shared BuildKit, checking that it answers.
func NewBuildKit(t testing.TB) *BuildKit {
	t.Helper()
	Root(t)
	k := &BuildKit{
		Host:     os.Getenv("LAYERCOMMIT_BUILDKIT_HOST"),
		Buildctl: os.Getenv("LAYERCOMMIT_BUILDCTL"),
		Base:     os.Getenv("LAYERCOMMIT_BUILDKIT_BASE"),
	}
	if k.Host == "" || k.Buildctl == "" || k.Base == "" {
		Missing(t, "BuildKit not started: source scripts/oracles.sh and run oracles_up")
	}
	if out, err := exec.Command(k.Buildctl, "--addr", k.Host, "debug", "workers").CombinedOutput(); err != nil {
		Missing(t, "buildkitd at %s does not answer: %v\n%s", k.Host, err, out)
	}
	return k
}

// BuildOpts are the buildctl options of one build.
type BuildOpts struct {
	Dockerfile string            // path, default CONTEXT/Dockerfile
	BuildArgs  map[string]string // --opt build-arg:K=V
	Platform   string            // --opt platform=P
	Target     string            // --opt target=STAGE
	Secrets    []string          // --secret id=ID,src=FILE|env=VAR
	SSH        []string          // --ssh ID=SOCKET
	// Contexts are named local contexts (--build-context NAME=DIR):
	// --local NAME=DIR --opt context:NAME=local:NAME.
	Contexts map[string]string
	// Push, when set, pushes the image to this reference in the
	// loopback registry instead of exporting a layout (dest is then "").
	Push string
}

// TryBuild builds the context with the built-in Dockerfile frontend
// (dockerfile.v0: no `# syntax=` image is pulled) and exports it as an
// OCI layout directory (or pushes it, see BuildOpts.Push). It returns
// the layout's path and BuildKit's output, with the error.
func (k *BuildKit) TryBuild(t testing.TB, contextDir string, o BuildOpts) (string, string, error) {
	t.Helper()
	df := contextDir
	args := []string{"--addr", k.Host, "build", "--progress", "plain", "--frontend", "dockerfile.v0",
		"--local", "context=" + contextDir}
	if o.Dockerfile != "" {
		df = filepath.Dir(o.Dockerfile)
		args = append(args, "--opt", "filename="+filepath.Base(o.Dockerfile))
	}
	args = append(args, "--local", "dockerfile="+df)
	for key, v := range o.BuildArgs {
		args = append(args, "--opt", "build-arg:"+key+"="+v)
	}
	if o.Platform != "" {
		args = append(args, "--opt", "platform="+o.Platform)
	}
	if o.Target != "" {
		args = append(args, "--opt", "target="+o.Target)
	}
	for _, sec := range o.Secrets {
		args = append(args, "--secret", sec)
	}
	for _, ssh := range o.SSH {
		args = append(args, "--ssh", ssh)
	}
	for name, dir := range o.Contexts {
		args = append(args, "--local", name+"="+dir, "--opt", "context:"+name+"=local:"+name)
	}
	dest := filepath.Join(t.TempDir(), "buildkit-oci")
	if o.Push != "" {
		dest = ""
		args = append(args, "--output", "type=image,name="+o.Push+",push=true,registry.insecure=true")
	} else {
		args = append(args, "--output", "type=oci,dest="+dest+",tar=false")
	}
	var out bytes.Buffer
	cmd := exec.Command(k.Buildctl, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return dest, out.String(), err
}

// Build is TryBuild that fails the test when BuildKit fails.
func (k *BuildKit) Build(t testing.TB, contextDir string, o BuildOpts) string {
	t.Helper()
	dest, out, err := k.TryBuild(t, contextDir, o)
	if err != nil {
		t.Fatalf("buildctl build: %v\n%s", err, tail(strings.TrimSpace(out), 30))
	}
	return dest
}
