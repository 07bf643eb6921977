package builder

import (
	"context"
	"strings"

	"github.com/layercommit/layercommit/dockerfile"
)

func (s *stageState) shell() []string {
	if len(s.config().Shell) > 0 {
		return append([]string(nil), s.config().Shell...)
	}
	return append([]string(nil), defaultShell...)
}

// nopComment is the legacy builder's created_by for metadata steps:
// SHELL + "#(nop) " + the instruction (two spaces after "#(nop)").
func (s *stageState) nopComment(text string) string {
	return strings.Join(append(s.shell(), "#(nop) ", text), " ")
}

// nopCommentString is the one-argument form used for WORKDIR, COPY, ADD.
func (s *stageState) nopCommentString(text string) string {
	return strings.Join(append(s.shell(), "#(nop) "+text), " ")
}

// dispatch runs one instruction: ARG and MAINTAINER change the stage,
// RUN, COPY and ADD make layers, and every other instruction changes the
// config through dockerfile's Dispatcher, the one `commit --change` runs
// too; WORKDIR then also makes its directory.
func (b *build) dispatch(ctx context.Context, s *stageState, in dockerfile.Instruction) error {
	switch in := in.(type) {
	case *dockerfile.ArgInstr:
		return b.dispatchArg(ctx, s, in)
	case *dockerfile.MaintainerInstr:
		return b.dispatchMaintainer(ctx, s, in)
	case *dockerfile.RunInstr:
		return b.runStep(ctx, s, in)
	case *dockerfile.CopyInstr:
		return b.copyStep(ctx, s, in)
	}
	d := dockerfile.Dispatcher{Config: s.config(), Lex: b.lex, Args: b.allowedArgs(s), CmdSet: s.cmdSet}
	if !b.o.Legacy {
		d.BuildKit, d.Env = true, b.expansionEnv(s)
		d.OnEnv = func(k, v string) { s.env = addEnv(s.env, k, v) }
	}
	text, err := d.Dispatch(in)
	if err != nil {
		return err
	}
	s.cmdSet = d.CmdSet
	if _, ok := in.(*dockerfile.HealthcheckInstr); ok {
		s.startInterval = d.StartInterval
	}
	if _, ok := in.(*dockerfile.WorkdirInstr); ok {
		return b.workdir(ctx, s, in.Pos())
	}
	return b.commitMeta(ctx, s, in.Pos(), s.nopComment(text))
}

// dispatchArg declares the stage's ARGs: a --build-arg, else the
// expanded default, else the meta ARG of that name. Unless Legacy, a
// value also goes into the build state's environment, as BuildKit's
// dispatchArg does.
func (b *build) dispatchArg(ctx context.Context, s *stageState, in *dockerfile.ArgInstr) error {
	var parts []string
	for _, kv := range in.Args {
		var v *string
		if kv.Value != nil {
			x, err := b.expand(s, in.Line, *kv.Value)
			if err != nil {
				return err
			}
			v = &x
			parts = append(parts, kv.Key+"="+x)
		} else {
			parts = append(parts, kv.Key)
		}
		if o, ok := b.buildArg(kv.Key); ok {
			v = o
		} else if v == nil {
			v = b.metaArgs[kv.Key]
		}
		if _, seen := s.args[kv.Key]; !seen {
			s.argOrder = append(s.argOrder, kv.Key)
		}
		s.args[kv.Key] = v
		// BuildKit puts an ARG with a value into the build state's
		// environment, over an ENV of its name (but not the SBOM
		// scanner's args: dockerfile2llb's nonEnvArgs).
		if !b.o.Legacy && v != nil && kv.Key != "BUILDKIT_SBOM_SCAN_CONTEXT" && kv.Key != "BUILDKIT_SBOM_SCAN_STAGE" {
			s.env = addEnv(s.env, kv.Key, *v)
		}
	}
	return b.commitMeta(ctx, s, in.Line, s.nopComment("ARG "+strings.Join(parts, " ")))
}

// dispatchMaintainer sets the author of the stage's later images.
func (b *build) dispatchMaintainer(ctx context.Context, s *stageState, in *dockerfile.MaintainerInstr) error {
	v, err := b.expand(s, in.Line, in.Name)
	if err != nil {
		return err
	}
	s.maintainer = v
	return b.commitMeta(ctx, s, in.Line, s.nopComment("MAINTAINER "+v))
}
