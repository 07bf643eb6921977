package diff

import (
	"fmt"
	"os"
	"sort"
)

// joinRel joins a relative layer path and a name with "/".
func joinRel(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// sortStrings sorts by raw bytes, the order of Go's string comparison.
func sortStrings(s []string) { sort.Strings(s) }

// checkRootDir makes sure the root of a change set is a directory.
func checkRootDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}
