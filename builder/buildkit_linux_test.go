package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/export"
	"github.com/layercommit/layercommit/internal/oracle"
	"github.com/layercommit/layercommit/unpack"
)

// conformanceCase is one row of the BuildKit conformance table: a small
// context built by BuildKit v0.34 (buildctl, the built-in dockerfile.v0
// frontend) and by Build, whose images must look the same to a user.
// "{{BASE}}" in the Dockerfile is the busybox base in the loopback
// registry, "{{INDEX}}" a two-platform image there (multiArchBase).
type conformanceCase struct {
	name       string
	dockerfile string
	files      map[string]string
	platform   string
	buildArgs  map[string]string
	prepare    func(t *testing.T, contextDir string) // after files are written
	secrets    map[string]string                     // --secret id=K,src=(a file holding V)
	ssh        []string                              // --ssh ID=(a test agent's socket)
	// contexts are named local contexts (--build-context NAME=DIR), each
	// a dir holding the files given.
	contexts map[string]map[string]string
	// want holds, per path, text its description must contain in
	// BuildKit's image (and so in ours): what the row is about.
	want map[string]string
}

var conformanceCases = []conformanceCase{
	// Heredocs as BuildKit runs them.
	{name: "run-heredoc-to-shell-unexpanded", dockerfile: `FROM {{BASE}}
ENV G=env-value
RUN <<EOF
f=set-in-script
echo "$f $HOME $G" > /out
echo 'single $f' "dq \"x\"" >> /out
EOF
`, want: map[string]string{"out": `content="set-in-script /root env-value\nsingle $f dq \"x\"\n"`}},
	{name: "run-heredoc-arg-from-env", dockerfile: `FROM {{BASE}}
ARG V=arg-value
RUN <<EOF
echo "$V" > /v
EOF
`},
	{name: "run-heredoc-shebang", dockerfile: `FROM {{BASE}}
RUN mkdir -p /usr/bin && ln -s /bin/env /usr/bin/env
RUN <<EOF
#!/usr/bin/env sh
echo "script $# ${0%/*}" > /shebang
ls /dev/pipes > /pipes
EOF
`, want: map[string]string{"shebang": `content="script 0 /dev/pipes\n"`, "pipes": `content="EOF\n"`}},
	{name: "run-heredoc-with-command", dockerfile: `FROM {{BASE}}
RUN cat > /o <<EOF
$HOME "quoted" 'single'
EOF
RUN cat > /q <<'EOF'
$HOME not expanded
EOF
`},
	{name: "run-heredoc-chomp", dockerfile: "FROM {{BASE}}\nRUN <<-EOF\n\techo tabbed > /t\n\t\techo two >> /t\nEOF\nRUN cat > /u <<-EOF\n\tline\n\t\tdeeper\nEOF\n"},
	{name: "run-several-heredocs", dockerfile: `FROM {{BASE}}
RUN cat > /a <<A && cat > /b <<B
first $HOME
A
second "b"
B
`},
	{name: "copy-heredoc-keeps-quotes", dockerfile: `FROM {{BASE}}
ARG V=arg-value
ENV E=env-value
COPY <<EOF /a.json
{"a": "b", 'c': "$E", "v": "$V", "esc": "\$E"}
EOF
COPY <<"EOF" /raw
{"a": "b"} $E ${V}
EOF
ADD <<'EOF' /added
'$E' "x"
EOF
`, want: map[string]string{"a.json": `content="{\"a\": \"b\", 'c': \"env-value\", \"v\": \"arg-value\", \"esc\": \"$E\"}\n"`,
		"raw": `content="{\"a\": \"b\"} $E ${V}\n"`}},
	{name: "copy-heredoc-chomp-and-several", dockerfile: "FROM {{BASE}}\nCOPY <<-A <<B /dir/\n\tone\n\t\ttwo\nA\n\tkept tabs\nB\nCOPY --chmod=0755 <<EOF /script\n#!/bin/sh\nEOF\n"},
	// What every build does: the config fields a user sees, owners,
	// modes, symlinks and removals.
	{name: "config-fields", dockerfile: `FROM {{BASE}}
ENV A=1 B="two words"
LABEL l1=v1 "l 2"="v 2"
EXPOSE 80 443/udp 8000-8001
WORKDIR /srv/app
USER nobody
SHELL ["/bin/sh", "-ec"]
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD ["true"]
STOPSIGNAL SIGINT
VOLUME /data /cache
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
`},
	{name: "files-owners-modes-links", files: map[string]string{"f": "file\n", "d/x": "x\n"}, dockerfile: `FROM {{BASE}}
COPY --chown=1:2 f /owned
COPY --chmod=0640 d /d/
RUN ln -s /owned /link && ln -s ../missing /dangling && mkdir -m 1777 /sticky && chown 65534:65534 /sticky \
 && rm /data/basefile && mkdir /m && touch /m/a && chmod 4755 /m/a && mkfifo /fifo
`},
	// A base's xattrs stay; BuildKit sends none of context files and its
	// COPY --from copies none (busybox's cp -a neither): ours the same.
	{name: "files-xattrs", files: map[string]string{"x": "x\n"}, prepare: func(t *testing.T, dir string) {
		if err := unix.Setxattr(filepath.Join(dir, "x"), "user.note", []byte("context"), 0); err != nil {
			t.Fatal(err)
		}
	}, dockerfile: `FROM {{XATTR}} AS base
RUN echo > /xattr-changed && cat /xattr >> /xattr-changed
FROM base
COPY x /x
COPY --from=base /xattr /copied
RUN cp -a /xattr /cp-a
`, want: map[string]string{"xattr": `xattr:user.note="from the base"`}},
	// Platform: automatic ARGs, their scoping and FROM --platform.
	{name: "platform-args-scoping", dockerfile: `FROM --platform=$BUILDPLATFORM {{BASE}}
ENV BEFORE="${TARGETPLATFORM}|${BUILDARCH}"
RUN echo "before:$TARGETARCH:$BUILDOS" > /before
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT
ENV AFTER="$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT|$BUILDPLATFORM|$BUILDOS|$BUILDARCH|$BUILDVARIANT"
RUN echo "$TARGETPLATFORM $TARGETOS $TARGETARCH v=$TARGETVARIANT $BUILDPLATFORM $BUILDOS $BUILDARCH v=$BUILDVARIANT" > /after
LABEL arch=$TARGETARCH
`},
	{name: "platform-global-scope", dockerfile: `ARG TARGETOS
ARG IMG_ARCH=$TARGETARCH
FROM --platform=$BUILDPLATFORM {{BASE}} AS build
ARG IMG_ARCH
RUN echo "$IMG_ARCH" > /img-arch
FROM --platform=linux/amd64 {{BASE}}
ARG TARGETOS
COPY --from=build /img-arch /
LABEL os=$TARGETOS
`},
	{name: "platform-amd64-explicit", platform: "linux/amd64", dockerfile: `FROM {{BASE}}
ARG TARGETPLATFORM
RUN echo "$TARGETPLATFORM" > /p
`},
	{name: "platform-foreign-without-run", platform: "linux/arm64", files: map[string]string{"f": "data\n"}, dockerfile: `FROM scratch
ARG TARGETARCH TARGETPLATFORM BUILDARCH
COPY f /f
LABEL arch=$TARGETARCH platform=$TARGETPLATFORM build=$BUILDARCH
ENV ARCH=$TARGETARCH
`},
	{name: "platform-foreign-base-without-run", platform: "linux/arm64/v8", dockerfile: `FROM {{BASE}}
ARG TARGETVARIANT
ENV V=$TARGETVARIANT
`},
	{name: "platform-index-base-for-target", platform: "linux/arm64", dockerfile: `FROM {{INDEX}}
COPY --from={{INDEX}} /arch /copied-arch
`},
	{name: "platform-index-base-for-build-platform", platform: "linux/arm64", dockerfile: `FROM --platform=$BUILDPLATFORM {{INDEX}} AS host
FROM {{INDEX}}
COPY --from=host /arch /host-arch
`},
	// RUN --mount: every type, its defaults, and no mount point left in
	// the layer.
	{name: "mount-bind-context", files: map[string]string{"f": "ctx file\n", "d/x": "x\n"}, dockerfile: `FROM {{BASE}}
RUN --mount=target=/ctx cat /ctx/f > /from-ctx && (touch /ctx/new 2>/dev/null && echo rw || echo ro) > /ro
RUN --mount=type=bind,source=d,target=/new/deep/dir,rw touch /new/deep/dir/written && cat /new/deep/dir/x > /dx && ls /new/deep/dir > /rw-ls
RUN --mount=source=f,dst=/etc/f-file cat /etc/f-file > /ffile
WORKDIR /w
RUN --mount=src=d,target=rel ls rel > /rel-ls
`, want: map[string]string{"ro": `content="ro\n"`, "rw-ls": `content="written\nx\n"`}},
	{name: "mount-bind-stage-and-image", dockerfile: `FROM {{BASE}} AS s1
RUN mkdir /made && echo stage > /made/f
FROM {{BASE}}
RUN --mount=from=s1,source=/made,target=/m cat /m/f > /got
RUN --mount=from={{BASE}},target=/base ls /base/data > /base-ls
RUN --mount=from=s1,target=/rw,rw echo x > /rw/made/f && cat /rw/made/f > /rw-got
RUN cat /made/f 2>/dev/null > /not-there || echo absent > /not-there
`, want: map[string]string{"got": `content="stage\n"`}},
	{name: "mount-tmpfs", dockerfile: `FROM {{BASE}}
RUN --mount=type=tmpfs,target=/tmp/t,size=1m echo x > /tmp/t/f && df -k /tmp/t | tail -1 | awk '{print $2}' > /size && stat -c '%a %u' /tmp/t > /tmode
`, want: map[string]string{"size": `content="1024\n"`}},
	{name: "mount-cache", dockerfile: `FROM {{BASE}}
RUN --mount=type=cache,target=/var/cache/conf echo one > /var/cache/conf/log && stat -c '%a %u %g' /var/cache/conf > /perm1
RUN --mount=type=cache,target=/var/cache/conf/ cp /var/cache/conf/log /log2
RUN --mount=type=cache,id=conf-perm,target=/c2,uid=1,gid=2,mode=0700,sharing=locked stat -c '%a %u %g' /c2 > /perm2
RUN --mount=type=cache,id=conf-ro,target=/c3,ro,sharing=private (touch /c3/x 2>/dev/null && echo rw || echo ro) > /ro
`, want: map[string]string{"log2": `content="one\n"`, "perm2": `content="700 1 2\n"`}},
	{name: "mount-secret", secrets: map[string]string{"tok": "s3cr3t-value"}, dockerfile: `FROM {{BASE}}
RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len && stat -c '%a %u %g' /run/secrets/tok > /perm
RUN --mount=type=secret,id=tok,env=TOK,target=/s/f,mode=0440,uid=1,gid=2 test "$TOK" = "$(cat /s/f)" && stat -c '%a %u %g' /s/f > /same
RUN --mount=type=secret,id=tok,env=ONLY_ENV test -n "$ONLY_ENV" && ls /run > /run-ls 2>&1; true
RUN --mount=type=secret,id=absent ls /run/secrets > /absent 2>&1 || true
`, want: map[string]string{"len": `content="12\n"`, "same": `content="440 1 2\n"`}},
	{name: "platform-build-stage-for-foreign-target", platform: "linux/arm64", dockerfile: `FROM --platform=$BUILDPLATFORM {{BASE}} AS build
ARG TARGETARCH BUILDARCH
RUN echo "$BUILDARCH->$TARGETARCH" > /cross
FROM scratch
COPY --from=build /cross /cross
`},

	// RUN --mount, second part: ssh, seeded caches, the context through
	// .dockerignore, named local contexts.
	{name: "mount-ssh", ssh: []string{"default", "other"}, prepare: func(t *testing.T, dir string) { copySSHLS(t, dir) }, dockerfile: `FROM {{BASE}}
RUN --mount=type=ssh --mount=target=/h /h/sshls > /reply && echo "$SSH_AUTH_SOCK" > /sock && stat -c '%F %a %u %g' /run/buildkit/ssh_agent.0 > /perm
RUN --mount=type=ssh,id=other,target=/s/agent,mode=0640,uid=1,gid=2 --mount=type=ssh,required=true --mount=target=/h /h/sshls /run/buildkit/ssh_agent.1 > /reply2 && stat -c '%F %a %u %g' /s/agent > /perm2 && echo "$SSH_AUTH_SOCK" > /sock2
RUN --mount=type=ssh,id=absent (ls -a /run/buildkit 2>&1 || true) > /absent && echo "$SSH_AUTH_SOCK" > /sock3
RUN --mount=type=ssh --mount=target=/h for t in 1 9 17 18 19 22 27 200; do /h/sshls - $t; done > /read-only
ENV SSH_AUTH_SOCK=/mine
RUN --mount=type=ssh echo "$SSH_AUTH_SOCK" > /sock4
`, want: map[string]string{"reply": `content="000000050c00000000\n"`, "perm": `content="socket 600 0 0\n"`, "perm2": `content="socket 640 1 2\n"`,
		"sock2": `content="/s/agent\n"`, "sock4": `content="/mine\n"`,
		"read-only": `content="000000050200000000\n0000000106\n0000000105\n0000000105\n0000000105\n0000000105\n0000000105\n0000000105\n"`}},
	// A seeded cache is a copy of the whole from= file system, shared by
	// every RUN with the same id and seed, of which source= is mounted.
	// {{NONCE}} keeps BuildKit's caches of earlier runs out.
	{name: "mount-cache-from-stage", dockerfile: `FROM {{BASE}} AS seed
RUN mkdir -p /pkgs/sub && echo seeded > /pkgs/sub/f && echo top > /top
FROM {{BASE}}
RUN --mount=type=cache,id=s{{NONCE}},from=seed,source=/pkgs,target=/c cat /c/sub/f > /got && echo added > /c/new && ls /c > /ls1
RUN --mount=type=cache,id=s{{NONCE}},from=seed,source=pkgs,target=/c ls /c > /ls2
RUN --mount=type=cache,id=s{{NONCE}},from=seed,target=/whole ls /whole/pkgs > /ls3 && cat /whole/top > /top-got
RUN --mount=type=cache,id=p{{NONCE}},from=seed,target=/p,mode=0750,uid=3 stat -c '%a %u %g' /p > /perm && ls -A /p > /perm-ls
RUN --mount=type=cache,id=i{{NONCE}},from={{BASE}},source=/data,target=/d ls /d > /img-ls
RUN --mount=type=cache,id=o{{NONCE}},target=/o,ro ls -A /o > /plain-ls
`, want: map[string]string{"got": `content="seeded\n"`, "ls2": `content="new\nsub\n"`, "ls3": `content="new\nsub\n"`, "perm": `content="750 3 0\n"`}},
	{name: "mount-bind-context-dockerignore", files: map[string]string{".dockerignore": "secret.txt\nlogs\n!logs/keep\nempty-after\n**/*.tmp\n",
		"secret.txt": "s\n", "logs/a": "a\n", "logs/keep": "k\n", "kept": "y\n", "empty-after/x": "x\n", "d/b.tmp": "t\n", "d/c": "c\n"}, prepare: func(t *testing.T, dir string) {
		if err := os.Chmod(filepath.Join(dir, "d"), 0o750); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"d", "d/c"} {
			if err := os.Chown(filepath.Join(dir, n), 7, 8); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Link(filepath.Join(dir, "kept"), filepath.Join(dir, "d/kept-link")); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkfifo(filepath.Join(dir, "d/fifo"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../kept", filepath.Join(dir, "d/sym")); err != nil {
			t.Fatal(err)
		}
	}, dockerfile: `FROM {{BASE}}
RUN --mount=target=/ctx ls -A /ctx > /ls && ls -A /ctx/logs > /logs-ls && ls -A /ctx/d > /d-ls && cd /ctx && stat -c '%n %a %u %g %F %h' . d d/* > /d-stat && readlink d/sym > /d-sym
RUN --mount=target=/ctx,rw ls -A /ctx > /ls-rw && rm /ctx/kept && ls -A /ctx > /ls-rw-rm
RUN --mount=source=d,target=/d ls -A /d > /src-ls
`, want: map[string]string{"ls": `content=".dockerignore\nDockerfile\nd\nkept\nlogs\n"`, "logs-ls": `content="keep\n"`, "d-ls": `content="c\nfifo\nkept-link\nsym\n"`, "d-stat": `d/c 644 0 0 regular file 1`}},
	{name: "mount-bind-named-local-context", contexts: map[string]map[string]string{"named": {"f": "named file\n", "sub/g": "g\n", ".dockerignore": "hidden\nsub/h*\n", "hidden": "h\n", "sub/h1": "h\n"}}, dockerfile: `FROM {{BASE}}
RUN --mount=from=named,target=/n ls -A /n > /named && cat /n/f > /named-f && (touch /n/w 2>/dev/null && echo rw || echo ro) > /named-ro
RUN --mount=from=named,source=sub,target=/s,rw echo x > /s/new && ls -A /s > /named-rw
RUN --mount=type=cache,id=n{{NONCE}},from=named,source=sub,target=/nc ls -A /nc > /named-cache && touch /nc/added && stat -c '%u %g' /nc/g > /named-cache-owner
RUN --mount=type=cache,id=n{{NONCE}},from=named,target=/nc2 ls -A /nc2/sub > /named-cache2
`, want: map[string]string{"named-cache": `content="g\n"`, "named-cache2": `content="g\n"`, "named-f": `content="named file\n"`, "named-ro": `content="ro\n"`, "named-rw": `content="g\nnew\n"`}},
}

// TestBuildKitConformance builds every row with BuildKit and with Build
// and compares the final file systems (paths, types, content, modes,
// owners, symlink targets, xattrs; not times) and the configs.
func TestBuildKitConformance(t *testing.T) {
	k := oracle.NewBuildKit(t)
	index, xattrBase := multiArchBase(t, k), xattrImage(t, k)
	for _, tc := range conformanceCases {
		t.Run(tc.name, func(t *testing.T) {
			nonce := fmt.Sprint(time.Now().UnixNano())
			df := strings.NewReplacer("{{BASE}}", k.Base, "{{INDEX}}", index, "{{XATTR}}", xattrBase, "{{NONCE}}", nonce).Replace(tc.dockerfile)
			files := map[string]string{"Dockerfile": df}
			for n, c := range tc.files {
				files[n] = c
			}
			ctxDir := writeContext(t, files)
			if tc.prepare != nil {
				tc.prepare(t, ctxDir)
			}
			var secrets []string
			o := Options{ContextDir: ctxDir, Platform: tc.platform, ResolvePlatform: registryResolver, BuildArgs: map[string]*string{}, Secrets: map[string][]byte{}}
			for id, v := range tc.secrets {
				f := filepath.Join(t.TempDir(), id)
				if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
					t.Fatal(err)
				}
				secrets = append(secrets, "id="+id+",src="+f)
				o.Secrets[id] = []byte(v)
			}
			var ssh []string
			for _, id := range tc.ssh {
				sock := testAgent(t)
				ssh = append(ssh, id+"="+sock)
				if o.SSH == nil {
					o.SSH = map[string]string{}
				}
				o.SSH[id] = sock
			}
			contexts := map[string]string{}
			for name, files := range tc.contexts {
				contexts[name] = writeContext(t, files)
				if o.BuildContexts == nil {
					o.BuildContexts = map[string]string{}
				}
				o.BuildContexts[name] = contexts[name]
			}
			theirs := k.Build(t, ctxDir, oracle.BuildOpts{Platform: tc.platform, BuildArgs: tc.buildArgs, Secrets: secrets, SSH: ssh, Contexts: contexts})
			ours := filepath.Join(t.TempDir(), "ours")
			for k, v := range tc.buildArgs {
				o.BuildArgs[k] = &v
			}
			if _, err := testBuild(t, o, "oci:"+ours); err != nil {
				t.Fatalf("our build: %v", err)
			}
			theirImg, ourImg := layoutImage(t, theirs), layoutImage(t, ours)
			if a, b := userConfig(t, theirImg), userConfig(t, ourImg); a != b {
				t.Errorf("config differs:\nbuildkit: %s\nours:     %s", a, b)
			}
			a, b := imageTree(t, theirImg), imageTree(t, ourImg)
			for p, w := range tc.want {
				if !strings.Contains(a[p], w) {
					t.Errorf("BuildKit's %s is %q, want it to contain %q", p, a[p], w)
				}
			}
			for _, d := range treeDiff(a, b) {
				t.Error(d)
			}
		})
	}
}

// registryResolver opens a plain name from its registry (the loopback
// one here) for platform p, as layercommit build's resolver does.
func registryResolver(ctx context.Context, ref string, p v1.Platform) (v1.Image, error) {
	if _, _, err := export.Parse(ref); err != nil {
		ref = "docker://" + ref
	}
	return export.Open(ctx, ref, func(o *export.Options) { o.Platform = p })
}

// xattrImage pushes the busybox base plus a layer holding /xattr with a
// user.note xattr to the loopback registry and returns its reference.
func xattrImage(t *testing.T, k *oracle.BuildKit) string {
	t.Helper()
	base, err := name.ParseReference(k.Base)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(base)
	if err != nil {
		t.Fatalf("pulling %s: %v", base, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := "has an xattr\n"
	h := &tar.Header{Typeflag: tar.TypeReg, Name: "xattr", Mode: 0o644, Size: int64(len(body)), Format: tar.FormatPAX,
		ModTime: time.Unix(1700000000, 0), PAXRecords: map[string]string{"SCHILY.xattr.user.note": "from the base"}}
	if err := tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(oracle.Tag(k.Base[:strings.LastIndex(k.Base, ":")] + "-xattr"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return ref.String()
}

// multiArchBase pushes an image index for linux/amd64 and linux/arm64
// (scratch, each with /arch naming its platform) to the loopback registry
// with BuildKit, and returns its reference.
func multiArchBase(t *testing.T, k *oracle.BuildKit) string {
	t.Helper()
	ref := oracle.Tag(k.Base[:strings.LastIndex(k.Base, ":")] + "-index")
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nARG TARGETPLATFORM\nCOPY <<EOF /arch\n$TARGETPLATFORM\nEOF\n"})
	k.Build(t, ctxDir, oracle.BuildOpts{Platform: "linux/amd64,linux/arm64", Push: ref})
	return ref
}

// layoutImage is the one image of an OCI layout.
func layoutImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("%s has %d manifests, want 1", dir, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// userConfig is what `docker inspect` shows a user of an image's config,
// as JSON.
func userConfig(t *testing.T, img v1.Image) string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	b, err := json.Marshal(struct {
		OS, Architecture, Variant            string
		Env, Cmd, Entrypoint, Shell, OnBuild []string
		User, WorkingDir, StopSignal         string
		Labels                               map[string]string
		ExposedPorts, Volumes                map[string]struct{}
		Healthcheck                          *v1.HealthConfig
	}{cf.OS, cf.Architecture, cf.Variant, c.Env, c.Cmd, c.Entrypoint, c.Shell, c.OnBuild,
		c.User, c.WorkingDir, c.StopSignal, c.Labels, c.ExposedPorts, c.Volumes, c.Healthcheck})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// imageTree unpacks img's layers into a fresh dir and describes every
// entry: type and mode bits, owner, content digest, symlink target and
// xattrs (not times: RUN makes files at different instants).
func imageTree(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	root := t.TempDir()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = unpack.Apply(t.Context(), root, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("unpacking a layer: %v", err)
		}
	}
	out := map[string]string{}
	err = filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		d := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			d += fmt.Sprintf(" sha=%x", sha256.Sum256(data))
			if len(data) < 200 {
				d += fmt.Sprintf(" content=%q", data)
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			d += " link=" + target
		case unix.S_IFCHR, unix.S_IFBLK:
			d += fmt.Sprintf(" dev=%d/%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		d += xattrs(t, p)
		out[rel] = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func xattrs(t *testing.T, p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	var names []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		names = append(names, name)
	}
	sort.Strings(names)
	var s string
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("reading xattr %s of %s: %v", name, p, err)
		}
		s += fmt.Sprintf(" xattr:%s=%q", name, v[:m])
	}
	return s
}

// runtimeMountPoint reports whether path (described as d) is an empty
// /dev, /proc or /sys directory of tree.
func runtimeMountPoint(path, d string, tree map[string]string) bool {
	if path != "dev" && path != "proc" && path != "sys" || !strings.HasPrefix(d, "mode=40755 uid=0 gid=0") {
		return false
	}
	for k := range tree {
		if strings.HasPrefix(k, path+"/") {
			return false
		}
	}
	return true
}

// treeDiff lists the entries that differ, sorted.
func treeDiff(buildkit, ours map[string]string) []string {
	var diffs []string
	for k, a := range buildkit {
		if b, ok := ours[k]; !ok && runtimeMountPoint(k, a, buildkit) {
			// runc makes the mount points /dev, /proc and /sys when the
			// base lacks them, and BuildKit's differ keeps them; our
			// sandbox's init layer provides them, as Docker's does. Every
			// container has them mounted over, so no user sees them.
			continue
		} else if !ok {
			diffs = append(diffs, fmt.Sprintf("only in BuildKit's image: %s %s", k, a))
		} else if a != b {
			diffs = append(diffs, fmt.Sprintf("%s differs:\n  buildkit: %s\n  ours:     %s", k, a, b))
		}
	}
	for k, b := range ours {
		if _, ok := buildkit[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("only in our image: %s %s", k, b))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// arm64ELF is the start of an aarch64 executable: enough for the kernel
// to refuse it (exec format error) on any other architecture.
func arm64ELF() string {
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	h[16], h[18], h[20] = 2, 183, 1 // ET_EXEC, EM_AARCH64, EV_CURRENT
	h[52], h[54] = 64, 56           // e_ehsize, e_phentsize
	return string(h)
}

// TestBuildKitForeignPlatformRun: a RUN on a platform the host cannot run
// (no emulator) fails in BuildKit and here, here with one line naming the
// platform, before anything is written.
func TestBuildKitForeignPlatformRun(t *testing.T) {
	if runtime.GOARCH == "arm64" {
		t.Skip("the host runs arm64")
	}
	k := oracle.NewBuildKit(t)
	ctxDir := writeContext(t, map[string]string{"sh": arm64ELF(), "Dockerfile": "FROM scratch\nCOPY --chmod=0755 sh /bin/sh\nRUN true\n"})
	if _, out, err := k.TryBuild(t, ctxDir, oracle.BuildOpts{Platform: "linux/arm64"}); err == nil {
		t.Fatalf("BuildKit ran an arm64 binary here; the test needs a host that cannot:\n%s", out)
	}
	dest := filepath.Join(t.TempDir(), "out")
	_, err := testBuild(t, Options{ContextDir: ctxDir, Platform: "linux/arm64"}, "oci:"+dest)
	want := "Dockerfile:3: RUN: cannot run linux/arm64 binaries on this linux/" + runtime.GOARCH + " host"
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want one line starting %q", err, want)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("the failed build wrote %s (%v)", dest, err)
	}
}

// TestBuildPlatformErrors: platforms that cannot be parsed fail with one
// line at the FROM, or before anything for Options.Platform.
func TestBuildPlatformErrors(t *testing.T) {
	for _, tc := range []struct {
		name, dockerfile, platform, want string
	}{
		{"bad-option", "FROM scratch\n", "linux/nope/x/y", `bad platform "linux/nope/x/y"`},
		{"empty-from-platform", "FROM --platform=$UNSET scratch\n", "", "Dockerfile:1: empty platform value from expression $UNSET"},
		{"bad-from-platform", "ARG P=linux/arm64/v8/x\nFROM --platform=$P scratch\n", "", "Dockerfile:2: failed to parse platform $P"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctxDir := writeContext(t, map[string]string{"Dockerfile": tc.dockerfile})
			_, err := testBuild(t, Options{ContextDir: ctxDir, Platform: tc.platform})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line starting %q", err, tc.want)
			}
		})
	}
}
