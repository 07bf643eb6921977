package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layercommit/layercommit/diff"
	"github.com/layercommit/layercommit/export"
)

func init() {
	register(command{"inspect", "inspect [--json] REF", runInspect})
}

type inspectLayer struct {
	DiffID    v1.Hash `json:"diffID"`
	ChainID   v1.Hash `json:"chainID"`
	Digest    v1.Hash `json:"digest"`
	Size      int64   `json:"size"`
	MediaType string  `json:"mediaType"`
}

type inspectOutput struct {
	ID           v1.Hash        `json:"id"`
	Digest       v1.Hash        `json:"digest"`
	MediaType    string         `json:"mediaType"`
	Architecture string         `json:"architecture"`
	OS           string         `json:"os"`
	Created      string         `json:"created"`
	Layers       []inspectLayer `json:"layers"`
	History      []v1.History   `json:"history"`
	Config       v1.Config      `json:"config"`
}

func runInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	dockerRoot := fs.String("docker-root", "/var/lib/docker", "Docker data root")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("inspect: want one REF, got %d arguments", fs.NArg())
	}
	if ref, ok := strings.CutPrefix(fs.Arg(0), "docker-root:"); ok {
		return inspectDockerRoot(ref, *dockerRoot, *asJSON, stdout)
	}
	img, err := export.Open(context.Background(), fs.Arg(0), export.WithDockerRoot(*dockerRoot))
	if err != nil {
		return err
	}
	o, err := describe(img)
	if err != nil {
		return fmt.Errorf("inspecting %s: %w", fs.Arg(0), err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(o)
	}
	fmt.Fprintf(stdout, "ID:       %s\nDigest:   %s (%s)\nPlatform: %s/%s\nCreated:  %s\n", o.ID, o.Digest, o.MediaType, o.OS, o.Architecture, o.Created)
	c := o.Config
	fmt.Fprintf(stdout, "Config:   Entrypoint=%q Cmd=%q User=%q WorkingDir=%q Env=%q\n", c.Entrypoint, c.Cmd, c.User, c.WorkingDir, c.Env)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAYER\tDIFFID\tCHAINID\tDIGEST\tSIZE")
	for i, l := range o.Layers {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\n", i, l.DiffID, l.ChainID, l.Digest, l.Size)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HISTORY\tCREATED\tCREATED BY\tAUTHOR\tCOMMENT\tEMPTY")
	for i, h := range o.History {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%v\n", i, h.Created.UTC().Format("2006-01-02T15:04:05Z07:00"), truncate(h.CreatedBy, 60), h.Author, h.Comment, h.EmptyLayer)
	}
	return tw.Flush()
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

func describe(img v1.Image) (*inspectOutput, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	dg, err := img.Digest()
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if len(m.Layers) != len(cf.RootFS.DiffIDs) {
		return nil, fmt.Errorf("manifest has %d layers but the config %d diffIDs", len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	chain := diff.ChainIDs(cf.RootFS.DiffIDs)
	o := &inspectOutput{ID: id, Digest: dg, MediaType: string(mt), Architecture: cf.Architecture, OS: cf.OS,
		Created: cf.Created.UTC().Format("2006-01-02T15:04:05.999999999Z07:00"), History: cf.History, Config: cf.Config}
	for i, d := range m.Layers {
		o.Layers = append(o.Layers, inspectLayer{DiffID: cf.RootFS.DiffIDs[i], ChainID: chain[i], Digest: d.Digest, Size: d.Size, MediaType: string(d.MediaType)})
	}
	return o, nil
}
