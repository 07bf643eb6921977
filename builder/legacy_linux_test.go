package builder

import (
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestLegacyRulesMatchDocker builds, with Options.Legacy and with the
// real Docker 20.10 legacy builder (DOCKER_BUILDKIT=0), a Dockerfile on
// which the legacy builder and BuildKit disagree (the BuildKit side is
// the conformance rows workdir-after-user, env-arg-precedence and
// arg-inherited-by-stage): the files must be Docker's, and show the
// legacy rules (ENV beats ARG, no ARG across FROM, root-owned WORKDIR).
func TestLegacyRulesMatchDocker(t *testing.T) {
	d := oracle.NewDocker(t)
	ctxDir := writeContext(t, map[string]string{"Dockerfile": "FROM " + d.Base + ` AS parent
RUN echo 'app:x:1234:4321::/home/app:/bin/sh' >> /etc/passwd
ENV A=env-a
ARG A=arg-a
ARG P=from-parent
RUN echo "$A" > /run-env
USER app
WORKDIR /srv/a
USER root
FROM parent
RUN echo "p=$P" > /inherited
CMD ["sh"]
`})
	ours, theirs := buildBoth(t, d, ctxDir, d.Base, "legacy-rules")
	fa, fb := exportFiles(t, d, ours), exportFiles(t, d, theirs)
	for _, diff := range diffFiles(fa, fb) {
		t.Errorf("files: %s", diff)
	}
	for _, ref := range []string{ours, theirs} {
		if got := d.Run(t, "run", "--rm", "--network", "none", ref, "cat", "/run-env", "/inherited"); got != "env-a\np=" {
			t.Errorf("%s: /run-env and /inherited hold %q, want the legacy builder's \"env-a\\np=\"", ref, got)
		}
	}
	if !strings.Contains(fa["srv/a"], "owner=0:0") {
		t.Errorf("/srv/a: %s, want owner 0:0 (the legacy builder's WORKDIR)", fa["srv/a"])
	}
}
