package builder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// syncMount is a cache mount every stage of a test build shares: the
// stages' RUNs leave marker files there for each other.
const syncMount = "--mount=type=cache,id=sync,target=/sync,sharing=shared"

// waitFor is a shell loop that waits (bounded: about 60 s, then exit 9)
// until the marker file exists.
func waitFor(marker string) string {
	return `i=0; while [ ! -e /sync/` + marker + ` ]; do i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.1; done`
}

// TestBuildParallelStages: independent stages build at once (each of two
// stages waits for the other's marker: built one after the other, the
// first would give up), stages the target does not need do not run, and
// the image is the one the sequential build makes.
func TestBuildParallelStages(t *testing.T) {
	base := busyboxImage(t)
	df := "FROM " + base + " AS a\n" +
		"RUN " + syncMount + " touch /sync/a && " + waitFor("b") + " && echo a > /a\n" +
		"FROM " + base + " AS b\n" +
		"RUN " + syncMount + " touch /sync/b && " + waitFor("a") + " && echo b > /b\n" +
		"FROM " + base + " AS unneeded\n" +
		"RUN false\n" +
		"FROM scratch\n" +
		"COPY --from=a /a /a\n" +
		"COPY --from=b /b /b\n"
	ctx := writeContext(t, map[string]string{"Dockerfile": df})
	epoch := int64(0)
	par, err := testBuild(t, Options{ContextDir: ctx, Parallelism: 2, SourceDateEpoch: &epoch})
	if err != nil {
		t.Fatalf("parallel build: %v", err)
	}
	// The same stages without the rendezvous, one after the other and at
	// once: the same image ID.
	seqDF := strings.NewReplacer(" && "+waitFor("b"), "", " && "+waitFor("a"), "").Replace(df)
	if seqDF == df {
		t.Fatal("the rendezvous was not removed")
	}
	ctx2 := writeContext(t, map[string]string{"Dockerfile": seqDF})
	ids := map[int]string{}
	for _, n := range []int{1, 2} {
		id, err := testBuild(t, Options{ContextDir: ctx2, Parallelism: n, SourceDateEpoch: &epoch})
		if err != nil {
			t.Fatalf("build with Parallelism %d: %v", n, err)
		}
		ids[n] = id.String()
	}
	if ids[1] != ids[2] {
		t.Errorf("sequential build %s, parallel build %s", ids[1], ids[2])
	}
	// The rendezvous leaves no trace in the image: the same ID again.
	if par.String() != ids[1] {
		t.Errorf("rendezvous build %s, sequential build %s", par, ids[1])
	}
}

// TestBuildParallelStageFails: when a stage fails, the stages building
// at once are cancelled (their RUN is killed: it never writes its last
// marker), the error is the failed stage's, and no mount is left.
func TestBuildParallelStageFails(t *testing.T) {
	base := busyboxImage(t)
	df := "FROM " + base + " AS slow\n" +
		"RUN " + syncMount + " touch /sync/slow-started && sleep 120 && touch /sync/slow-finished\n" +
		"FROM " + base + " AS failing\n" +
		"RUN " + syncMount + " " + waitFor("slow-started") + " && exit 3\n" +
		"FROM scratch\n" +
		"COPY --from=slow /etc/passwd /a\n" +
		"COPY --from=failing /etc/passwd /b\n"
	state := t.TempDir()
	_, err := testBuild(t, Options{ContextDir: writeContext(t, map[string]string{"Dockerfile": df}), StateDir: state, Parallelism: 2})
	var se *StepError
	if !errors.As(err, &se) || se.Line != 4 || se.ExitCode != 3 {
		t.Fatalf("err = %v, want the failing stage's exit 3 at line 4", err)
	}
	var started, finished bool
	filepath.WalkDir(state, func(p string, d os.DirEntry, err error) error {
		switch filepath.Base(p) {
		case "slow-started":
			started = true
		case "slow-finished":
			finished = true
		}
		return nil
	})
	if !started || finished {
		t.Errorf("slow stage: started %v, finished %v; want started and killed", started, finished)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), state) {
		t.Errorf("mounts left under the state dir:\n%s", mi)
	}
}
