package builder

import (
	"fmt"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// buildPlatforms are a build's platforms, as BuildKit's dockerfile
// frontend has them: the build platform is the host's; the target is
// Options.Platform, else the host's (then "implicit": the image keeps its
// base's platform).
type buildPlatforms struct {
	build, target ocispecs.Platform
	implicit      bool
}

func newBuildPlatforms(target string) (buildPlatforms, error) {
	p := buildPlatforms{build: platforms.Normalize(platforms.DefaultSpec())}
	p.target, p.implicit = p.build, target == ""
	if target != "" {
		t, err := parsePlatform(target)
		if err != nil {
			return p, fmt.Errorf("bad platform %q: %w", target, err)
		}
		p.target = t
	}
	return p, nil
}

// parsePlatform reads os/arch[/variant], normalized as containerd does
// (aarch64 is arm64, arm64/v8 has no variant, arm is arm/v7).
func parsePlatform(s string) (ocispecs.Platform, error) {
	p, err := platforms.Parse(s)
	if err != nil {
		return p, err
	}
	return platforms.Normalize(p), nil
}

// automaticArgs are the ARGs BuildKit defines in the global scope
// (a stage sees one only after declaring it with ARG NAME), in BuildKit's
// order. targetStage is the stage built ("default" for an unnamed one).
func (p buildPlatforms) automaticArgs(targetStage string) [][2]string {
	if targetStage == "" {
		targetStage = "default"
	}
	bp, tp := p.build, p.target
	return [][2]string{
		{"BUILDPLATFORM", platforms.Format(bp)},
		{"BUILDOS", bp.OS},
		{"BUILDOSVERSION", bp.OSVersion},
		{"BUILDARCH", bp.Architecture},
		{"BUILDVARIANT", bp.Variant},
		{"TARGETPLATFORM", platforms.FormatAll(tp)},
		{"TARGETOS", tp.OS},
		{"TARGETOSVERSION", tp.OSVersion},
		{"TARGETARCH", tp.Architecture},
		{"TARGETVARIANT", tp.Variant},
		{"TARGETSTAGE", targetStage},
	}
}

// canRun reports whether binaries of platform p run on the build
// platform (amd64 also runs 386, as BuildKit's worker lists). Emulators
// registered with binfmt_misc are not looked for.
func (p buildPlatforms) canRun(q ocispecs.Platform) bool {
	return platforms.Only(p.build).Match(q)
}

// imagePlatform sets the platform fields of a stage's config as BuildKit
// does: a scratch stage is the target platform; a stage on an image keeps
// the image's, unless a target was asked for, which then replaces OS and
// architecture (and the variant when it has one or the architecture
// changed).
func (p buildPlatforms) imagePlatform(os, arch, variant *string, scratch bool) {
	t := p.target
	switch {
	case scratch:
		*os, *arch, *variant = t.OS, t.Architecture, t.Variant
	case !p.implicit:
		same := *os == t.OS && *arch == t.Architecture
		*os, *arch = t.OS, t.Architecture
		if t.Variant != "" || !same {
			*variant = t.Variant
		}
	}
}
