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
	"slices"
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
	// absent are paths BuildKit's image (and so ours) must not hold.
	absent []string
	// images, when set, checks more of the two images.
	images func(t *testing.T, buildkit, ours v1.Image)
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
	// Where BuildKit's dockerfile frontend and the legacy builder differ
	// (Options.Legacy keeps the legacy rules): WORKDIR's directories are
	// the USER's (resolved in the stage's passwd, unknown names root),
	// the config keeping an unclean path as written; an ARG overrides an earlier ENV of its name in
	// what RUN and later words see (the config keeps the ENV), as a
	// --build-arg does; a stage FROM another inherits its ARGs.
	{name: "workdir-after-user", dockerfile: `FROM {{BASE}}
RUN echo 'app:x:1234:4321::/home/app:/bin/sh' >> /etc/passwd && echo 'grp:x:777:' >> /etc/group && mkdir -m 0700 /existing
USER app
WORKDIR /srv/a/b
USER 1000
WORKDIR /num/x
USER app:grp
WORKDIR c
USER nosuch
WORKDIR /unknown
USER nobody
WORKDIR /srv
WORKDIR /existing/new
WORKDIR /
USER root
RUN stat -c '%u %g' /srv/a /srv/a/b > /owners
USER app
WORKDIR /a/../clean/./p/
`, want: map[string]string{"srv/a": "uid=1234 gid=4321", "srv/a/b": "uid=1234 gid=4321", "num/x": "uid=1000 gid=1000",
		"num/x/c": "uid=1234 gid=777", "unknown": "uid=0 gid=0", "existing": "mode=40700 uid=0 gid=0", "existing/new": "uid=65534 gid=65534",
		"clean/p": "uid=1234 gid=4321"}, absent: []string{"a"}},
	{name: "env-arg-precedence", buildArgs: map[string]string{"B": "from-cli", "C": "cli-c"}, dockerfile: `FROM {{BASE}}
ENV A=env-a B=env-b C=env-c
ARG A=arg-a
ARG B
ARG C=default-c
RUN echo "$A $B $C" > /run-env && env | grep -E '^(A|B|C)=' > /env-order
ENV D=$A-$B
LABEL a=$A b=$B c=$C
WORKDIR /$A
ENV A=env-a2
RUN echo "$A" > /after-env
ARG A
RUN echo "$A" > /redeclared
`, want: map[string]string{"run-env": `content="arg-a from-cli cli-c\n"`, "after-env": `content="env-a2\n"`, "redeclared": `content="env-a2\n"`, "arg-a": "mode=40755"},
		images: func(t *testing.T, buildkit, ours v1.Image) {
			cf, err := buildkit.ConfigFile()
			if err != nil || !slices.Contains(cf.Config.Env, "D=arg-a-from-cli") || !slices.Contains(cf.Config.Env, "B=env-b") || cf.Config.Labels["a"] != "arg-a" {
				t.Errorf("BuildKit's Env %q, Labels %v (%v): want D=arg-a-from-cli, B=env-b, a=arg-a", cf.Config.Env, cf.Config.Labels, err)
			}
		}},
	{name: "arg-inherited-by-stage", dockerfile: `FROM {{BASE}} AS parent
ARG P=from-parent
ENV E=env
FROM parent AS child
RUN echo "p=$P e=$E" > /inherited
ARG Q=q
FROM parent
COPY --from=child /inherited /
RUN echo "p=$P q=$Q" > /grand
LABEL p=$P
`, want: map[string]string{"inherited": `content="p=from-parent e=env\n"`, "grand": `content="p=from-parent q=\n"`}},
	// Also BuildKit's (and the legacy builder's, it seems, but proven
	// here against BuildKit only): a VOLUME's contents written by a later
	// RUN are kept (VOLUME makes no directory), HOME follows USER, a stage's ONBUILD runs in the
	// stage FROM it and is not inherited.
	{name: "volume-home-onbuild", dockerfile: `FROM {{BASE}} AS trig
ONBUILD RUN echo triggered > /trig
ONBUILD ENV T=1
FROM trig
VOLUME /v
RUN (test -d /v && echo dir || echo none) > /v-made && mkdir -p /v && echo kept > /v/f && echo "$HOME" > /home-root && mkdir -m 1777 /w
USER nobody
RUN echo "$HOME" > /w/home-nobody
USER 4242
RUN echo "$HOME" > /w/home-num
`, want: map[string]string{"v/f": `content="kept\n"`, "v-made": `content="none\n"`, "trig": `content="triggered\n"`}},
	{name: "expose-specs-and-cmd-across-stages", dockerfile: `FROM {{BASE}} AS p
ARG PORTS="7000 7001/udp"
EXPOSE 80/TCP 53/UDP 8000-8002/udp 9000:90 $PORTS
CMD ["from-parent"]
FROM p
ENTRYPOINT ["/bin/echo"]
`},
	// HEALTHCHECK --start-interval is Healthcheck.StartInterval, kept by
	// a stage FROM that one, dropped by a later HEALTHCHECK without it.
	{name: "healthcheck-start-interval", dockerfile: `FROM {{BASE}} AS h
HEALTHCHECK --interval=5s --start-period=10s --start-interval=2s --retries=2 CMD ["true"]
FROM h AS kept
LABEL x=y
FROM kept AS replaced
HEALTHCHECK CMD ["false"]
FROM kept
COPY --from=replaced /etc/group /
`, images: func(t *testing.T, buildkit, ours v1.Image) {
		raw, err := buildkit.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if si, err := rawStartInterval(raw); err != nil || si != 2*time.Second {
			t.Errorf("BuildKit's StartInterval is %v (%v), want 2s", si, err)
		}
	}},
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
	// COPY and ADD flags (dockerfile:1): --chmod octal and symbolic,
	// --chown by name, --exclude, --parents. With --parents the source
	// is the context root, so --exclude matches from there (d.txt does
	// not exclude a/b/d.txt).
	{name: "copy-chmod-symbolic", files: map[string]string{"f": "f\n", "exe": "#!/bin/sh\n", "d/x": "x\n", "d/sub/y": "y\n"},
		prepare: func(t *testing.T, dir string) {
			for p, m := range map[string]os.FileMode{"exe": 0o755, "d/sub": 0o700, "d/x": 0o600} {
				if err := os.Chmod(filepath.Join(dir, p), m); err != nil {
					t.Fatal(err)
				}
			}
		}, dockerfile: `FROM {{BASE}}
COPY --chmod=u+x,go=rX f exe /sym/
COPY --chmod=go-w,u=rwx d /symd/
COPY --chmod=a=rX d /rx/
COPY --chmod=g+s,o-rwx d /gs/
COPY --chmod=0640 f /newdir/sub/f
COPY --chmod=u=rwx,g=rx,o= d /new2/deep/
ARG M=u=rw,go=r
COPY --chmod=$M exe /var-mode
ADD --chmod=u+x <<EOF /heredoc
x
EOF
`, want: map[string]string{"sym/exe": "mode=100755", "sym/f": "mode=100744", "rx/sub": "mode=40555", "rx/x": "mode=100444"}},
	{name: "copy-chown-names", files: map[string]string{"f": "f\n", "d/x": "x\n"}, dockerfile: `FROM {{BASE}}
RUN echo 'app:x:1234:4321::/home/app:/bin/sh' >> /etc/passwd && echo 'grp:x:777:' >> /etc/group
COPY --chown=app f /u
COPY --chown=app:grp f /ug
COPY --chown=app: f /u-colon
COPY --chown=1234 f /num
COPY --chown=:grp f /g-only
COPY --chown=nosuchuser f /unknown
COPY --chown=app:nosuchgroup f /unknown-group
COPY --chown=5:grp f /num-name
ARG U=app
COPY --chown=$U:777 d /owned-dir/
COPY --chown=app f /new/parent/f
`, want: map[string]string{"u": "uid=1234 gid=4321", "ug": "uid=1234 gid=777", "num": "uid=1234 gid=1234"}},
	{name: "copy-exclude", files: map[string]string{"d/a.txt": "a\n", "d/b.log": "b\n", "d/sub/c.txt": "c\n", "d/sub/keep.log": "k\n",
		"d/skip/x": "x\n", "top.txt": "t\n", "top.log": "l\n"}, dockerfile: `FROM {{BASE}}
COPY --exclude=*.log --exclude=skip d /ex1/
COPY --exclude=**/*.txt d /ex2/
COPY --exclude=sub --exclude=!sub/keep.log d /ex3/
COPY --exclude=*.log top.* /ex4/
COPY --exclude=d/sub --exclude=Dockerfile . /ex5/
ADD --exclude=*.txt d /ex6/
`, absent: []string{"ex1/b.log", "ex1/skip", "ex2/a.txt", "ex2/sub/c.txt", "ex3/sub/c.txt", "ex5/d/sub", "ex5/Dockerfile", "ex6/a.txt"},
		// BuildKit matches --exclude below each source, not against a
		// wildcard's matches themselves: top.log is copied.
		want: map[string]string{"ex3/sub/keep.log": "content", "ex2/sub/keep.log": "content", "ex4/top.txt": "content", "ex4/top.log": "content"}},
	{name: "copy-parents", files: map[string]string{"a/b/c.txt": "c\n", "a/b/d.txt": "d\n", "a/x/c.txt": "xc\n", "p/q/r.txt": "r\n"},
		prepare: func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "a/b"), 0o750); err != nil {
				t.Fatal(err)
			}
		}, dockerfile: `FROM {{BASE}}
COPY --parents a/b/c.txt /p1/
COPY --parents a/*/c.txt /p2/
COPY --parents p/./q/r.txt /p3/
COPY --parents a/b /p4/
COPY --parents --chmod=0700 a/b/c.txt p/q/r.txt /p5/
COPY --parents --exclude=d.txt --exclude=a/b/c.txt a/b/ /p6
`, want: map[string]string{"p6/a/b/d.txt": "content", "p3/q/r.txt": "content", "p1/a/b/c.txt": "content", "p2/a/x/c.txt": "content", "p1/a/b": "mode=40750"},
		absent: []string{"p1/a/b/d.txt", "p2/a/b/d.txt", "p3/p", "p6/a/b/c.txt"}},
	// A directory copied onto an existing one leaves that directory's
	// own mode and owner alone (BuildKit copies contents, not the source
	// directory's attributes), with or without --chown and --chmod.
	{name: "copy-dir-onto-existing", files: map[string]string{"d/x": "x\n", "d/s/y": "y\n"}, prepare: func(t *testing.T, dir string) {
		if err := os.Chmod(filepath.Join(dir, "d"), 0o750); err != nil {
			t.Fatal(err)
		}
	}, dockerfile: `FROM {{BASE}}
RUN mkdir -m 0700 /e1 /e2 /e3 && chown 1:1 /e1 /e2 /e3
COPY d /e1/
COPY --chown=5:6 d /e2
COPY --chmod=0444 d /e3/
COPY d /fresh
`, want: map[string]string{"e1": "mode=40700 uid=1 gid=1", "e2": "mode=40700 uid=1 gid=1", "e2/s": "uid=5 gid=6", "fresh": "mode=40755"}},
	// --link copies onto an empty tree stacked on the base: base
	// symlinks are not followed, parent directories are new ones, a file
	// may land where the base has a directory; with --chmod BuildKit
	// copies as without --link.
	{name: "copy-link", files: map[string]string{"f": "f\n", "d/x": "x\n"}, dockerfile: `FROM {{BASE}}
RUN mkdir -m 0700 /priv && chown 1:1 /priv && mkdir /target && ln -s /target /link && ln -s /target /link2 \
 && mkdir /existing && echo old > /existing/old && mkdir /ed && echo keep > /ed/keep
COPY --link f /priv/f
COPY --link f /link/f
COPY --link f /existing
COPY --link --chown=5:6 d /newd/
COPY --link d /ed/
COPY --link --chmod=0600 f /link2/f
WORKDIR /w
COPY --link f rel
`, want: map[string]string{"priv": "mode=40755 uid=0 gid=0", "link": "mode=40755", "target/f": "mode=100600"}},
	// ADD of URLs and archives: a URL is unpacked only with --unpack
	// (BuildKit 0.34), a local archive unless --unpack=false; a right
	// --checksum passes.
	{name: "add-unpack-and-checksum", prepare: func(t *testing.T, dir string) {
		if err := os.WriteFile(filepath.Join(dir, "a.tar.gz"), gzipTar(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}, dockerfile: `FROM {{BASE}}
ADD {{HTTP}}/a.tar.gz /url-default/
ADD --unpack {{HTTP}}/a.tar.gz /url-unpacked/
ADD --checksum=sha256:f6e379b0639054c51806fd5d67948cbcaebd354b0e91a7683932b043c5c3ba32 {{HTTP}}/f.txt /f.txt
ARG SUM=sha256:f6e379b0639054c51806fd5d67948cbcaebd354b0e91a7683932b043c5c3ba32
ADD --checksum=$SUM {{HTTP}}/f.txt /f-arg.txt
ADD --unpack=false a.tar.gz /local-kept/
ADD a.tar.gz /local-default/
`, want: map[string]string{"url-default/a.tar.gz": "mode=100600", "url-unpacked/dir/in.txt": "mode=100640", "local-kept/a.tar.gz": "mode=100644", "local-default/dir/in.txt": "content"}},
	// ADD of a local archive with --chown and --chmod.
	{name: "add-archive-chown-chmod", prepare: func(t *testing.T, dir string) {
		if err := os.WriteFile(filepath.Join(dir, "a.tar.gz"), gzipTar(t), 0o644); err != nil {
			t.Fatal(err)
		}
	}, dockerfile: `FROM {{BASE}}
ADD --chown=5:6 a.tar.gz /owned/
ADD --chmod=0600 a.tar.gz /moded/
ADD --chown=7:8 --unpack {{HTTP}}/a.tar.gz /url/
`},
	// The flags together, from a stage, onto URLs, through symlinks.
	{name: "copy-flags-mixed", files: map[string]string{"d/a.txt": "a\n", "d/b.log": "b\n", "d/s/c.txt": "c\n"}, prepare: func(t *testing.T, dir string) {
		if err := os.Symlink("a.txt", filepath.Join(dir, "d/ln")); err != nil {
			t.Fatal(err)
		}
	}, dockerfile: `FROM {{BASE}} AS src
COPY d /tree/
RUN mkdir -p /deep/x/y && echo z > /deep/x/y/z.txt && echo w > /deep/x/w.log
FROM {{BASE}}
COPY --from=src --exclude=*.log /tree /from-ex/
COPY --from=src --parents /deep/./x/y /from-parents/
COPY --from=src --parents --exclude=**/*.log /deep/x /from-parents-ex/
COPY --chmod=go-rwx,u+X d /sym-links/
ADD --chmod=0640 --chown=3:4 {{HTTP}}/f.txt /url/f.txt
ADD --link --chown=3:4 {{HTTP}}/f.txt /link-url/a/b/
COPY --link --chown=9:9 d/a.txt /link-deep/p/q/
`, want: map[string]string{"sym-links/ln": "link=a.txt", "from-parents/x/y/z.txt": "content", "url/f.txt": "mode=100640 uid=3 gid=4"},
		absent: []string{"from-ex/b.log", "from-parents-ex/deep/x/w.log"}},
	// Proxy build args reach RUN without an ARG, in both cases, and stay
	// out of the history; a declared one is an ordinary ARG too.
	{name: "run-proxy-args", buildArgs: map[string]string{"HTTP_PROXY": "http://proxy.invalid:3128", "no_proxy": "localhost,.internal", "all_proxy": "socks5://s.invalid:1080", "FTP_PROXY": ""},
		dockerfile: `FROM {{BASE}}
RUN env | grep -i _proxy= | sort > /proxies
ARG HTTP_PROXY
RUN echo "declared=$HTTP_PROXY" > /declared && env | grep -ic _proxy= > /count
`, want: map[string]string{ // sha256 of "ALL_PROXY=socks5://s.invalid:1080\nHTTP_PROXY=...\nNO_PROXY=...\nall_proxy=...\nhttp_proxy=...\nno_proxy=...\n"
			"proxies": "sha=20984aa0de88929c156706c6f19a0cb681421638c45b0ee68581100d060fe41d", "declared": `content="declared=http://proxy.invalid:3128\n"`},
		images: func(t *testing.T, buildkit, ours v1.Image) {
			a, b := historyMentions(t, buildkit, "proxy.invalid"), historyMentions(t, ours, "proxy.invalid")
			if a != "0 1" || b != a {
				t.Errorf("RUNs whose history names the proxy: BuildKit %q, ours %q, want \"0 1\" (only the one after ARG HTTP_PROXY)", a, b)
			}
		}},
	// ADD of git repositories (BuildKit's git source, here Debian's git):
	// refs, tags, branches, subdirs, the query form, --chown.
	{name: "add-git", dockerfile: `FROM {{BASE}}
ADD {{GIT}}/repo.git /default/
ADD {{GIT}}/repo.git#v1 /tag/
ADD {{GIT}}/repo.git#feature:sub /feature-sub/
ADD {{GIT}}/repo.git#:sub /sub-only
ADD --chown=5:6 {{GIT}}/repo.git?ref=main&subdir=sub /query/
ADD --chmod=u=rw,go= {{GIT}}/repo.git#main:sub /git-mode/
ADD --link --chown=2:3 {{GIT}}/repo.git#:sub /git-link/a/
`, want: map[string]string{"tag/top.txt": "content", "feature-sub/inner.txt": `content="inner on feature\n"`, "sub-only/run.sh": "mode=100755", "query/inner.txt": "uid=5 gid=6"},
		absent: []string{"default/.git", "tag/sub"}},
	// BUILDKIT_* build args: the sandbox hostname is honoured; the ones
	// that change nothing for a local context are consumed; declared,
	// they are ordinary ARGs.
	{name: "buildkit-args", buildArgs: map[string]string{"BUILDKIT_SANDBOX_HOSTNAME": "custom-host", "BUILDKIT_INLINE_CACHE": "1", "BUILDKIT_CONTEXT_KEEP_GIT_DIR": "1"},
		dockerfile: `FROM {{BASE}}
RUN hostname > /h
ARG BUILDKIT_INLINE_CACHE
RUN echo "inline=$BUILDKIT_INLINE_CACHE" > /ic
`, want: map[string]string{"h": `content="custom-host\n"`, "ic": `content="inline=1\n"`}},

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
	// A local named context (BuildKit: --opt context:NAME=local:NAME
	// --local NAME=DIR) as FROM's root and COPY --from's source: its
	// .dockerignore applied, every entry root's.
	{name: "named-local-context-copy-from", contexts: map[string]map[string]string{"named": {"f": "named file\n", "sub/g": "g\n", ".dockerignore": "hidden\n", "hidden": "h\n"}},
		dockerfile: `FROM named AS n
FROM {{BASE}}
COPY --from=named / /all/
COPY --from=named sub /sub-copy/
COPY --from=n /f /via-stage
COPY --from=named --chown=5:6 --chmod=0600 f /owned
RUN --mount=from=n,target=/m ls -A /m > /stage-ls
`, want: map[string]string{"all/f": `content="named file\n"`, "sub-copy/g": "uid=0 gid=0", "via-stage": "content", "owned": "mode=100600 uid=5 gid=6"},
		absent: []string{"all/hidden"}},
	{name: "named-local-context-from", contexts: map[string]map[string]string{"named": {"f": "named file\n", "d/x": "x\n"}}, dockerfile: `FROM named
COPY --from={{BASE}} /bin/busybox /bin/sh
ENV X=1
WORKDIR /d
`, want: map[string]string{"f": `content="named file\n"`, "d/x": "uid=0 gid=0"}},
}

// TestBuildKitConformance builds every row with BuildKit and with Build
// and compares the final file systems (paths, types, content, modes,
// owners, symlink targets, xattrs; not times) and the configs.
func TestBuildKitConformance(t *testing.T) {
	k := oracle.NewBuildKit(t)
	index, xattrBase := multiArchBase(t, k), xattrImage(t, k)
	// {{HTTP}} and {{GIT}}: BuildKit's daemon fetches them on the host's
	// loopback too.
	srv, gsrv := copyFlagServer(t), gitServer(t)
	for _, tc := range conformanceCases {
		t.Run(tc.name, func(t *testing.T) {
			nonce := fmt.Sprint(time.Now().UnixNano())
			df := strings.NewReplacer("{{BASE}}", k.Base, "{{INDEX}}", index, "{{XATTR}}", xattrBase, "{{HTTP}}", srv.URL, "{{GIT}}", gsrv.URL,
				"{{NONCE}}", nonce).Replace(tc.dockerfile)
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
			if tc.images != nil {
				tc.images(t, theirImg, ourImg)
			}
			for _, p := range tc.absent {
				if d, ok := a[p]; ok {
					t.Errorf("BuildKit's image holds %s (%s), want it absent", p, d)
				}
			}
			for _, d := range treeDiff(a, b) {
				t.Error(d)
			}
		})
	}
}

// historyMentions lists, for each RUN in img's history, 1 if its
// created_by contains s, else 0.
func historyMentions(t *testing.T, img v1.Image, s string) string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range cf.History {
		if !strings.Contains(h.CreatedBy, "/bin/sh -c") || strings.Contains(h.CreatedBy, "#(nop)") {
			continue
		}
		if strings.Contains(h.CreatedBy, s) {
			out = append(out, "1")
		} else {
			out = append(out, "0")
		}
	}
	return strings.Join(out, " ")
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
	si, err := startInterval(img)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(struct {
		OS, Architecture, Variant            string
		Env, Cmd, Entrypoint, Shell, OnBuild []string
		User, WorkingDir, StopSignal         string
		Labels                               map[string]string
		ExposedPorts, Volumes                map[string]struct{}
		Healthcheck                          *v1.HealthConfig
		StartInterval                        time.Duration // Healthcheck's, which v1.HealthConfig lacks
	}{cf.OS, cf.Architecture, cf.Variant, c.Env, c.Cmd, c.Entrypoint, c.Shell, c.OnBuild,
		c.User, c.WorkingDir, c.StopSignal, c.Labels, c.ExposedPorts, c.Volumes, c.Healthcheck, si})
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
