//go:build gendocs

// The man pages and shell completions of the Debian package, generated
// from the command tree. Built only by `make deb` (-tags gendocs), so that
// cobra/doc and its Markdown-to-roff converter stay out of the release
// binary.
package main

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { extraCommands = append(extraCommands, newGendocsCmd) }

func newGendocsCmd(root *cobra.Command) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:    "gendocs --out DIR",
		Short:  "Write man pages (DIR/man/man1) and completions (DIR/completions) from the command tree",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return genDocs(root, out)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output directory")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func genDocs(root *cobra.Command, out string) error {
	date := time.Unix(0, 0).UTC() // reproducible: the commit's time from SOURCE_DATE_EPOCH
	if s, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		date = time.Unix(s, 0).UTC()
	}
	man := filepath.Join(out, "man", "man1")
	plain := filepath.Join(out, "man", "plain")
	for _, d := range []string{man, plain, filepath.Join(out, "completions")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	root.DisableAutoGenTag = true
	hdr := &doc.GenManHeader{Title: "SENTINEL", Section: "1", Date: &date, Source: "sentinel " + version, Manual: "sentinel manual"}
	if err := doc.GenManTree(root, hdr, plain); err != nil {
		return err
	}
	pages, err := filepath.Glob(filepath.Join(plain, "*.1"))
	if err != nil {
		return err
	}
	for _, p := range pages {
		if err := gzipFile(p, filepath.Join(man, filepath.Base(p)+".gz")); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(plain); err != nil {
		return err
	}
	c := filepath.Join(out, "completions")
	if err := root.GenBashCompletionFileV2(filepath.Join(c, "sentinel"), true); err != nil {
		return err
	}
	if err := root.GenZshCompletionFile(filepath.Join(c, "_sentinel")); err != nil {
		return err
	}
	return root.GenFishCompletionFile(filepath.Join(c, "sentinel.fish"), true)
}

// gzipFile writes src gzipped (no name, no time: the same bytes each build).
func gzipFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	if _, err := zw.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
