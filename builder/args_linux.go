package builder

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/layercommit/layercommit/dockerfile"
)

// expandMeta gives a meta ARG its value: --build-arg, else the default
// expanded with the meta args so far.
func (b *build) expandMeta(line int, kv dockerfile.KeyValue) (*string, error) {
	if v, ok := b.buildArg(kv.Key); ok {
		return v, nil
	}
	if kv.Value == nil {
		return nil, nil
	}
	v, err := b.lex.ProcessWord(*kv.Value, b.metaEnv())
	if err != nil {
		return nil, lineErr(line, "expanding ARG %s: %w", kv.Key, err)
	}
	return &v, nil
}

func (b *build) buildArg(k string) (*string, bool) {
	v, ok := b.o.BuildArgs[k]
	if !ok {
		return nil, false
	}
	b.usedArgs[k] = true
	if v == nil {
		if e, ok := os.LookupEnv(k); ok {
			return &e, true
		}
		return nil, true
	}
	return v, true
}

func (b *build) metaEnv() []string {
	var env []string
	for k, v := range b.metaArgs {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	sort.Strings(env)
	return env
}

// expansionEnv is the environment words are expanded with: BuildKit's
// build state (s.env), or with Legacy the stage's Env, then the build
// args it declared that Env does not override.
func (b *build) expansionEnv(s *stageState) []string {
	if !b.o.Legacy {
		return slices.Clone(s.env)
	}
	return append(append([]string(nil), s.config().Env...), b.allowedArgs(s)...)
}

// allowedArgs are, with Legacy, the stage's declared ARGs that have a
// value and are not overridden by Env, as "k=v", in declaration order.
// BuildKit gives RUN every declared ARG (runArgs).
func (b *build) allowedArgs(s *stageState) []string {
	if !b.o.Legacy {
		return b.runArgs(s)
	}
	var out []string
	for _, k := range s.argOrder {
		v := s.args[k]
		if v == nil {
			continue
		}
		if _, ok := lookupEnv(s.config().Env, k); ok {
			continue
		}
		out = append(out, k+"="+*v)
	}
	return out
}

// runArgs are the build args BuildKit writes before a RUN's command in
// its history ("|N k=v ..."; dockerfile2llb's runCommandString): every
// ARG the stage declared (or inherited from the stage it is FROM), once,
// with its value in the build state, "" without one.
func (b *build) runArgs(s *stageState) []string {
	var out []string
	for _, k := range s.argOrder {
		v, _ := lookupEnv(s.env, k)
		out = append(out, k+"="+v)
	}
	return out
}

// stepArgs is what of the build args a step's cache key holds: with
// Legacy the args RUN sees, else the whole build state environment
// (where an ARG may override the config's Env).
func (b *build) stepArgs(s *stageState) []string {
	if b.o.Legacy {
		return b.allowedArgs(s)
	}
	return s.env
}

// addEnv sets k in BuildKit's build state environment as llb's
// EnvList.AddOrReplace does: an earlier entry of k goes, the new one is
// last.
func addEnv(env []string, k, v string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek != k {
			out = append(out, e)
		}
	}
	return append(out, k+"="+v)
}

func lookupEnv(env []string, k string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], k+"="); ok {
			return v, true
		}
	}
	return "", false
}

func (b *build) expand(s *stageState, line int, word string) (string, error) {
	v, err := b.lex.ProcessWord(word, b.expansionEnv(s))
	if err != nil {
		return "", lineErr(line, "%w", err)
	}
	return v, nil
}

// proxyArgs are the build args BuildKit passes to every RUN without an
// ARG (dockerfile2llb's proxyEnvFromBuildArgs, matched in any case), each
// given to the process in both its upper- and lower-case spelling
// (the exec op's proxyEnvList). They are left out of the step's
// created_by and cache key, as BuildKit leaves them out of its history
// and cache key.
var proxyArgs = []string{"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"}

// proxyEnv is the RUN environment the proxy build args give, in
// BuildKit's order; a name given in several cases takes the value of the
// last in sorted order, as BuildKit's loop over sorted keys does.
func (b *build) proxyEnv() []string {
	keys := make([]string, 0, len(b.o.BuildArgs))
	for k := range b.o.BuildArgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var env []string
	for _, p := range proxyArgs {
		var val string
		for _, k := range keys {
			if strings.EqualFold(k, p) {
				if v, _ := b.buildArg(k); v != nil {
					val = *v
				}
			}
		}
		if val != "" {
			env = append(env, p+"="+val, strings.ToLower(p)+"="+val)
		}
	}
	return env
}

// checkBuildKitArgs handles the BUILDKIT_* build args BuildKit's
// dockerfile frontend reads (dockerui's config and the builder's
// BUILDKIT_SYNTAX): those that change nothing here (they concern git
// contexts, attestations or cache export) are consumed, those that would
// change the result are honoured (BUILDKIT_SANDBOX_HOSTNAME, see
// sandboxHostname) or validated (BUILDKIT_SYNTAX, BUILDKIT_DOCKERFILE_CHECK),
// and the rest that BuildKit acts on are refused, one line each. Other
// BUILDKIT_* names are ordinary build args, as in BuildKit.
func (b *build) checkBuildKitArgs() error {
	for _, k := range []string{"BUILDKIT_INLINE_CACHE", "BUILDKIT_CONTEXT_KEEP_GIT_DIR", "BUILDKIT_GIT_ADVICE",
		"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE", "BUILDKIT_SANDBOX_HOSTNAME"} {
		b.buildArg(k)
	}
	if v, ok := b.buildArg("BUILDKIT_SYNTAX"); ok && v != nil {
		if ref, _, _ := strings.Cut(strings.TrimSpace(*v), " "); !dockerfile.BuiltinSyntax(ref) {
			return fmt.Errorf("BUILDKIT_SYNTAX=%s: unsupported frontend: layercommit builds with its built-in docker/dockerfile:1 and runs no frontend image", *v)
		}
	}
	if v, ok := b.buildArg("BUILDKIT_DOCKERFILE_CHECK"); ok && v != nil {
		if err := dockerfile.CheckOptions(*v); err != nil {
			return fmt.Errorf("BUILDKIT_DOCKERFILE_CHECK: %w", err)
		}
	}
	if v, ok := b.buildArg("BUILDKIT_MULTI_PLATFORM"); ok && v != nil {
		if on, err := strconv.ParseBool(*v); err != nil || on {
			return fmt.Errorf("BUILDKIT_MULTI_PLATFORM=%s is not supported: layercommit builds one image for one platform", *v)
		}
	}
	if v, ok := b.buildArg("BUILDKIT_CACHE_MOUNT_NS"); ok && v != nil && *v != "" {
		return fmt.Errorf("BUILDKIT_CACHE_MOUNT_NS=%s is not supported: cache mounts here have one namespace", *v)
	}
	if _, ok := b.buildArg("BUILDKIT_DISABLE_FILEOP"); ok {
		return errors.New(`support for "BUILDKIT_DISABLE_FILEOP" build-arg was removed in BuildKit 0.11`)
	}
	return nil
}

// sandboxHostname is BUILDKIT_SANDBOX_HOSTNAME, the hostname BuildKit
// gives RUN when it is set (it is then part of the step's cache key, as
// it is of BuildKit's exec op).
func (b *build) sandboxHostname() (string, bool) {
	v, ok := b.buildArg("BUILDKIT_SANDBOX_HOSTNAME")
	if !ok || v == nil || *v == "" {
		return "", false
	}
	return *v, true
}
