package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/source"
)

// registryFlags are how a channel command reaches registries.
type registryFlags struct{ auth, ca string }

func (f *registryFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.auth, "registry-auth", "", "the registries' credentials: a Docker config.json (default: none; basic credentials, and the bearer token flow where the registry asks for it)")
	cmd.Flags().StringVar(&f.ca, "registry-ca", "", "the CA (PEM) the registries' certificates are checked against (default: the system's roots)")
}

// settings are the flags' registry settings: a channel command reads no
// cluster file, so its advice names the flags only.
func (f *registryFlags) settings() oci.Settings {
	return oci.Settings{CAFile: f.ca, AuthFile: f.auth, From: oci.FlagsOnly}
}

// access reads the settings for the registry of ref (bad input: exit 2).
func (f *registryFlags) access(cmd *cobra.Command, raw string) (oci.Ref, oci.Access, error) {
	ref, err := oci.ParseRef(raw)
	if err != nil {
		return ref, oci.Access{}, err
	}
	a, err := f.settings().ForHost(cmd.Context(), ref.Host)
	return ref, a, err
}

func newChannelPushCmd() *cobra.Command {
	var rf registryFlags
	cmd := &cobra.Command{
		Use:   "push CHANNEL_DIR oci://HOST[:PORT]/REPO",
		Short: "Put the channel (its TUF metadata and targets) in an OCI registry",
		Long: `Each file of CHANNEL_DIR becomes a blob of REPO (blobs the registry has
are not sent again) and one manifest lists them, each with its path;
it is tagged with the timestamp's version (vN) and latest, last, so
readers see the previous publication or this one. Push again after
each 'sentinel channel publish' or 'timestamp'. The layout is in
docs/reference.md (Registries).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fi, err := os.Stat(args[0]); err != nil || !fi.IsDir() {
				return usagef("%s is not a channel directory (the directory holding metadata/ and targets/)", args[0])
			}
			ref, a, err := rf.access(cmd, args[1])
			if err != nil {
				return err
			}
			p, err := oci.Push(cmd.Context(), args[0], ref, a)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed %s to %s: %d files, %d uploaded (%d bytes), the rest there already; manifest %s tagged %v\n",
				args[0], ref, p.Files, p.Uploaded, p.Bytes, p.Manifest, p.Tags)
			return nil
		},
	}
	rf.add(cmd)
	return cmd
}

func newChannelCopyCmd() *cobra.Command {
	var rf registryFlags
	var o source.ChannelCopy
	cmd := &cobra.Command{
		Use:   "copy SRC oci://HOST[:PORT]/REPO --root ROOT.json [--release VERSION ...]",
		Short: "Fill a registry from a channel (https://, a directory or oci://), verified as a run verifies it",
		Long: `Reads the channel at SRC (the publisher's https:// repository, a
channel directory, or oci:// of another registry) from ROOT on, exactly
as a run does: metadata, then every document (index, manifests, patch
catalogs, sentinel builds). Then each artifact to copy is downloaded into
--work-dir, checked against its signed length and sha256, pushed, and
removed there. With --release, only the artifacts of those releases and
of their patch catalogs (and the newest sentinel build of each
platform); without, every artifact. The metadata and every document are
always copied. The publication is laid out as 'channel push' lays one
out, tagged v<timestamp version> and latest, last; files of the
publication already there are kept, so copies of one release after
another add up. Blobs the registry holds are neither downloaded nor sent
again: run it again after a failure and it does only what is left.

A refused channel (metadata or a document): exit 2, nothing pushed. An
artifact of other bytes than signed: exit 2, nothing of it pushed.

Without --root, SRC must be oci://: the registry's latest publication is
copied blob for blob, unverified (clients verify what they read); a
destination that holds another channel (another metadata/1.root.json)
is refused as with --root, exit 2, nothing copied.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Root == "" {
				if !oci.IsRef(args[0]) || len(o.Releases) > 0 {
					return usagef("channel copy %s needs --root FILE (the channel's root, as the cluster file's trust.root): it reads the channel as a run does, verified, to know what to copy", args[0])
				}
				return copyPublication(cmd, rf, args[0], args[1])
			}
			dst, err := oci.ParseRef(args[1])
			if err != nil {
				return err
			}
			if o.WorkDir == "" {
				if o.WorkDir, err = defaultCopyDir(); err != nil {
					return err
				}
			}
			o.Registry = rf.settings()
			o.Say = func(format string, args ...any) { fmt.Fprintf(cmd.OutOrStdout(), format, args...) }
			c, err := o.Run(cmd.Context(), args[0], dst)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "copied %s to %s: %d artifacts (%d there already), %d files uploaded (%d bytes), %d kept from the publication there; manifest %s tagged %v\n",
				args[0], dst, c.Artifacts, c.ArtifactsThere, c.Uploaded, c.Bytes, c.Kept, c.Manifest, c.Tags)
			return nil
		},
	}
	rf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Root, "root", "", "trust anchor: the channel's root as obtained from its publisher (the cluster file's trust.root; --trust-root is the same flag)")
	f.StringArrayVar(&o.Releases, "release", nil, "copy the artifacts of this release and its patches only (repeat for each release an upgrade goes through; default: every artifact)")
	f.StringVar(&o.WorkDir, "work-dir", "", "where artifacts are downloaded and verified before they are pushed (default: $XDG_CACHE_HOME/sentinel/channel-copy, or ~/.cache/...)")
	f.StringVar(&o.StateDir, "state-dir", "", "keep trusted metadata here, so that a later copy refuses older metadata (default: none, each copy starts from --root)")
	f.SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "trust-root" {
			name = "root"
		}
		return pflag.NormalizedName(name)
	})
	return cmd
}

// copyPublication copies a registry's latest publication as it is.
func copyPublication(cmd *cobra.Command, rf registryFlags, from, to string) error {
	src, sa, err := rf.access(cmd, from)
	if err != nil {
		return err
	}
	dst, da, err := rf.access(cmd, to)
	if err != nil {
		return err
	}
	digest, err := oci.Copy(cmd.Context(), src, sa, dst, da)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "copied %s to %s: manifest %s tagged latest (unverified: give --root to verify as you copy)\n", src, dst, digest)
	return nil
}

// defaultCopyDir is where channel copy keeps artifacts between its
// download and its push.
func defaultCopyDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", usagef("no directory for the artifacts in transit (%v): give --work-dir DIR", err)
	}
	return filepath.Join(dir, "sentinel", "channel-copy"), nil
}
