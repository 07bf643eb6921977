package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/layercommit/layercommit/dockerroot"
)

// inspectDockerRoot prints an image of a Docker data root the way the
// store chains it: per layer diffID, chainID, cache-id, size, the l/
// short name, the lower chain and the diff dir.
func inspectDockerRoot(ref, dir string, asJSON bool, stdout io.Writer) error {
	root, err := dockerroot.Open(dir)
	if err != nil {
		return err
	}
	info, err := root.Describe(ref)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	fmt.Fprintf(stdout, "ID:    %s\nTags:  %s\nRoot:  %s\n", info.ID, strings.Join(info.Tags, " "), root.Dir)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAYER\tDIFFID\tCHAINID\tCACHE-ID\tSIZE\tLINK\tLOWER\tDIFF DIR")
	for i, l := range info.Layers {
		lower := strings.Join(l.Lower, ":")
		if lower == "" {
			lower = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\tl/%s\t%s\t%s\n", i, l.DiffID, l.ChainID, l.CacheID, l.Size, l.Link, lower, l.DiffDir)
	}
	return tw.Flush()
}
