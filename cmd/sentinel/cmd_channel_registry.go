package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/oci"
)

// registryFlags are how a channel command reaches registries.
type registryFlags struct{ auth, ca string }

func (f *registryFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.auth, "registry-auth", "", "the registries' credentials: a Docker config.json (default: none; basic credentials, and the bearer token flow where the registry asks for it)")
	cmd.Flags().StringVar(&f.ca, "registry-ca", "", "the CA (PEM) the registries' certificates are checked against (default: the system's roots)")
}

// access reads the settings for the registry of ref (bad input: exit 2).
func (f *registryFlags) access(cmd *cobra.Command, raw string) (oci.Ref, oci.Access, error) {
	ref, err := oci.ParseRef(raw)
	if err != nil {
		return ref, oci.Access{}, err
	}
	a, err := oci.Settings{CAFile: f.ca, AuthFile: f.auth}.ForHost(cmd.Context(), ref.Host)
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
	cmd := &cobra.Command{
		Use:   "copy oci://SRC_HOST/REPO oci://DST_HOST/REPO",
		Short: "Copy the channel's latest publication, with every artifact, from one registry to another",
		Long: `Fills the operator's registry from the publisher's: the latest
publication's manifest and every blob it lists (those the destination
has are not sent again), tagged latest there. Nothing is verified on
the way: clients verify what they read, as from any registry. For a
channel served over HTTP, mirror its directory and use 'channel push'.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, sa, err := rf.access(cmd, args[0])
			if err != nil {
				return err
			}
			dst, da, err := rf.access(cmd, args[1])
			if err != nil {
				return err
			}
			digest, err := oci.Copy(cmd.Context(), src, sa, dst, da)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "copied %s to %s: manifest %s tagged latest\n", src, dst, digest)
			return nil
		},
	}
	rf.add(cmd)
	return cmd
}
