package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/oci"
	"github.com/sentinel-paas/sentinel/publish"
	"github.com/sentinel-paas/sentinel/source"
)

func newChannelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "channel",
		Short: "Publish a channel (a TUF repository) and verify one: for whoever publishes releases",
		Long: `A channel is a TUF repository with consistent snapshots:
  CHANNEL_DIR/metadata/N.root.json, timestamp.json, N.snapshot.json, N.targets.json
  CHANNEL_DIR/targets/<dir>/<sha256>.<name>
Serve CHANNEL_DIR as it is (any static HTTP server); operators write its
URL as the cluster file's channel, and its root as trust.root.

Keys are ed25519 files in the --keys directory, never inside CHANNEL_DIR,
never printed (only key ids). Roles are apart: root (a threshold of
offline keys), targets (offline), snapshot and timestamp (online).

From an empty directory (docs/publishing.md walks through it):
  sentinel channel init --keys KEYS CHANNEL_DIR
  sentinel channel add-release --keys KEYS --artifacts DIR --description release.json CHANNEL_DIR
  sentinel channel add-patch --keys KEYS --artifacts DIR --description patch.json CHANNEL_DIR
  sentinel channel add-sentinel --keys KEYS --version V --os linux --arch amd64 FILE CHANNEL_DIR
  sentinel channel timestamp --keys ONLINE_KEYS CHANNEL_DIR     (more often than daily)
  sentinel channel publish --keys KEYS CHANNEL_DIR              (re-sign targets, snapshot, timestamp)
  sentinel channel rotate --keys KEYS --role ROLE CHANNEL_DIR
  sentinel channel verify --root ROOT.json CHANNEL_DIR_OR_URL
  sentinel channel push CHANNEL_DIR oci://HOST[:PORT]/REPO       (a registry as the channel)
  sentinel channel copy --root ROOT.json SRC oci://HOST/REPO     (fill the operator's registry)`,
	}
	cmd.AddCommand(newChannelInitCmd(), newChannelAddReleaseCmd(), newChannelAddPatchCmd(), newChannelAddSentinelCmd(),
		newChannelPublishCmd(), newChannelTimestampCmd(), newChannelRotateCmd(), newChannelVerifyCmd(),
		newChannelPushCmd(), newChannelCopyCmd())
	return cmd
}

// expiryFlags are the validity periods a command signs with.
type expiryFlags struct{ e publish.Expiry }

func (f *expiryFlags) add(cmd *cobra.Command) {
	f.e = publish.DefaultExpiry
	cmd.Flags().DurationVar(&f.e.Root, "root-expiry", f.e.Root, "validity of a root signed now")
	cmd.Flags().DurationVar(&f.e.Targets, "targets-expiry", f.e.Targets, "validity of the targets metadata signed now")
	cmd.Flags().DurationVar(&f.e.Snapshot, "snapshot-expiry", f.e.Snapshot, "validity of the snapshot signed now")
	cmd.Flags().DurationVar(&f.e.Timestamp, "timestamp-expiry", f.e.Timestamp, "validity of the timestamp signed now")
	// Refused before anything is read or written: metadata signed with a
	// validity already past is refused by every client.
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if err := f.e.Check(); err != nil {
			return usagef("%v (--root-expiry, --targets-expiry, --snapshot-expiry, --timestamp-expiry)", err)
		}
		return nil
	}
}

// openRepo opens CHANNEL_DIR with the keys of --keys.
func openRepo(dir, keys string, ex expiryFlags) (*publish.Repo, error) {
	if keys == "" {
		return nil, usagef("--keys DIR is required: the directory holding the channel's key files")
	}
	r, err := publish.Open(dir, keys)
	if err != nil {
		return nil, usagef("%v", err)
	}
	r.Expiry = ex.e
	return r, nil
}

// published says what a command signed.
func published(cmd *cobra.Command, r *publish.Repo) {
	v := r.Versions()
	fmt.Fprintf(cmd.OutOrStdout(), "published %s: root %d, targets %d, snapshot %d, timestamp %d\n",
		r.Dir, v["root"], v["targets"], v["snapshot"], v["timestamp"])
}

func newChannelInitCmd() *cobra.Command {
	var keys string
	var o publish.InitOptions
	var ex expiryFlags
	cmd := &cobra.Command{
		Use:   "init --keys KEYS_DIR CHANNEL_DIR",
		Short: "Create an empty channel and its keys (root, targets, snapshot, timestamp)",
		Long: `Makes --root-keys root keys (--root-threshold of them must sign a new root)
and one key each for targets, snapshot and timestamp in KEYS_DIR (mode
0600), and publishes version 1 of each role in CHANNEL_DIR. Give
CHANNEL_DIR/metadata/1.root.json to operators out of band: it is their
trust.root. Move the root and targets keys offline once the first
release is published; the snapshot and timestamp keys stay online.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keys == "" {
				return usagef("--keys DIR is required: where the channel's key files are written (outside CHANNEL_DIR)")
			}
			o.Expiry = ex.e
			r, err := publish.Init(args[0], keys, o)
			if err != nil {
				return usagef("%v", err)
			}
			for _, role := range publish.Roles {
				fmt.Fprintf(cmd.OutOrStdout(), "%s keys: %s\n", role, strings.Join(r.KeyIDs(role), " "))
			}
			published(cmd, r)
			fmt.Fprintf(cmd.OutOrStdout(), "trust anchor for operators (give it out of band): %s\n", filepath.Join(args[0], "metadata", "1.root.json"))
			return nil
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "", "directory for the key files (created; outside CHANNEL_DIR)")
	cmd.Flags().IntVar(&o.RootKeys, "root-keys", 2, "how many root keys to make")
	cmd.Flags().IntVar(&o.RootThreshold, "root-threshold", 0, "how many root keys must sign a root (default: all)")
	ex.add(cmd)
	return cmd
}

func newChannelAddReleaseCmd() *cobra.Command {
	var keys, arts, desc string
	var ex expiryFlags
	cmd := &cobra.Command{
		Use:   "add-release --keys KEYS_DIR --artifacts DIR --description release.json CHANNEL_DIR",
		Short: "Add a release from its component archives and a description, and publish it",
		Long: `release.json names the release, the releases it upgrades from, and each
component: name, roles, archive file (in --artifacts) and hook limits:
  {"version": "3.4.2", "upgrade_from": ["3.4.1"],
   "components": [{"name": "router", "roles": ["router"], "artifact": "router-3.4.2.tar.gz",
                   "hooks": {"health": {"timeout": "5s", "retries": 3}}}]}
Each archive's sha256, size and unpacked size are computed; its hooks
(stop, start, health; drain and capacity for the dea role) must be there
and executable; roles must be known and upgrade paths name listed
releases. The manifest, the index and the archives become targets, and
targets, snapshot and timestamp are signed again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(desc)
			if err != nil {
				return usagef("--description: %v", err)
			}
			d, err := publish.ParseReleaseDescription(desc, data)
			if err != nil {
				return usagef("%v", err)
			}
			r, err := openRepo(args[0], keys, ex)
			if err != nil {
				return err
			}
			if err := r.AddRelease(arts, d); err != nil {
				return usagef("release %s: %v", d.Version, err)
			}
			if err := r.Publish(); err != nil {
				return usagef("%v", err)
			}
			published(cmd, r)
			return nil
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "", "directory of the channel's key files")
	cmd.Flags().StringVar(&arts, "artifacts", ".", "directory holding the component archives")
	cmd.Flags().StringVar(&desc, "description", "release.json", "the release description file")
	ex.add(cmd)
	return cmd
}

func newChannelAddPatchCmd() *cobra.Command {
	var keys, arts, desc string
	var ex expiryFlags
	cmd := &cobra.Command{
		Use:   "add-patch --keys KEYS_DIR --artifacts DIR --description patch.json CHANNEL_DIR",
		Short: "Add a patch to a release's catalog, and publish it",
		Long: `patch.json is one patch of the catalog whose components name archive files:
  {"release": "3.4.2", "id": 4, "name": "router-fix", "description": "Fix the router",
   "severity": "high", "roles": ["router"],
   "components": [{"name": "router", "version": "3.4.2-p2", "artifact": "router-3.4.2-p2.tar.gz", "restart": true}]}`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(desc)
			if err != nil {
				return usagef("--description: %v", err)
			}
			d, err := publish.ParsePatchDescription(desc, data)
			if err != nil {
				return usagef("%v", err)
			}
			r, err := openRepo(args[0], keys, ex)
			if err != nil {
				return err
			}
			if err := r.AddPatch(arts, d); err != nil {
				return usagef("patch %s: %v", d.Name, err)
			}
			if err := r.Publish(); err != nil {
				return usagef("%v", err)
			}
			published(cmd, r)
			return nil
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "", "directory of the channel's key files")
	cmd.Flags().StringVar(&arts, "artifacts", ".", "directory holding the patch archives")
	cmd.Flags().StringVar(&desc, "description", "patch.json", "the patch description file")
	ex.add(cmd)
	return cmd
}

func newChannelAddSentinelCmd() *cobra.Command {
	var keys, version, goos, goarch string
	var ex expiryFlags
	cmd := &cobra.Command{
		Use:   "add-sentinel --keys KEYS_DIR --version V --os OS --arch ARCH FILE CHANNEL_DIR",
		Short: "Offer a sentinel build for self-update (tools/sentinel.json), and publish it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version == "" {
				return usagef("--version is required: the build's version (0.5.0)")
			}
			r, err := openRepo(args[1], keys, ex)
			if err != nil {
				return err
			}
			if err := r.AddSentinelBuild(args[0], version, goos, goarch); err != nil {
				return usagef("%v", err)
			}
			if err := r.Publish(); err != nil {
				return usagef("%v", err)
			}
			published(cmd, r)
			return nil
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "", "directory of the channel's key files")
	cmd.Flags().StringVar(&version, "version", "", "the build's version")
	cmd.Flags().StringVar(&goos, "os", "linux", "the build's GOOS")
	cmd.Flags().StringVar(&goarch, "arch", "amd64", "the build's GOARCH")
	ex.add(cmd)
	return cmd
}

func newChannelPublishCmd() *cobra.Command {
	var keys string
	var ex expiryFlags
	cmd := &cobra.Command{
		Use:   "publish --keys KEYS_DIR CHANNEL_DIR",
		Short: "Sign new versions of targets, snapshot and timestamp (renewing their expiry)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := openRepo(args[0], keys, ex)
			if err != nil {
				return err
			}
			if err := r.Publish(); err != nil {
				return usagef("%v", err)
			}
			published(cmd, r)
			return nil
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "", "directory of the channel's key files")
	ex.add(cmd)
	return cmd
}

func newChannelTimestampCmd() *cobra.Command {
	var keys string
	var ex expiryFlags
	cmd := &cobra.Command{
		Use:   "timestamp --keys KEYS_DIR CHANNEL_DIR",
		Short: "Sign a new timestamp (online key only): run it more often than the timestamp expires",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := openRepo(args[0], keys, ex)
			if err != nil {
				return err
			}
			if err := r.Timestamp(); err != nil {
				return usagef("%v", err)
			}
			published(cmd, r)
			return nil
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "", "directory of the channel's key files (the timestamp key is enough)")
	ex.add(cmd)
	return cmd
}

func newChannelRotateCmd() *cobra.Command {
	var keys, role string
	var count, threshold int
	var ex expiryFlags
	cmd := &cobra.Command{
		Use:   "rotate --keys KEYS_DIR --role ROLE CHANNEL_DIR",
		Short: "Replace a role's keys in a new root (signed by the old root keys and the new), and publish",
		Long: `Makes --count new keys for ROLE (root, targets, snapshot or timestamp) in
KEYS_DIR, writes root version N+1 listing them instead of the old ones,
signed by the threshold of the old root's keys and of the new root's, and
signs targets, snapshot and timestamp again. After a leak of the snapshot
or timestamp key (a fast-forward attack: metadata signed with a huge
version), rotate both: clients then drop what they trusted from those
roles and accept the channel's real metadata again. Remove the old key
files once rotated.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := openRepo(args[0], keys, ex)
			if err != nil {
				return err
			}
			made, err := r.Rotate(role, count, threshold)
			if err != nil {
				return usagef("%v", err)
			}
			for _, k := range made {
				fmt.Fprintf(cmd.OutOrStdout(), "new %s key %s in %s\n", role, k.ID, filepath.Dir(k.Path))
			}
			published(cmd, r)
			return nil
		},
	}
	cmd.Flags().StringVar(&keys, "keys", "", "directory of the channel's key files")
	cmd.Flags().StringVar(&role, "role", "", "the role whose keys are replaced: root, targets, snapshot or timestamp")
	cmd.Flags().IntVar(&count, "count", 1, "how many new keys")
	cmd.Flags().IntVar(&threshold, "threshold", 0, "how many of them must sign (default: all)")
	ex.add(cmd)
	return cmd
}

func newChannelVerifyCmd() *cobra.Command {
	var o source.ChannelCheck
	cmd := &cobra.Command{
		Use:   "verify --root ROOT [--release VERSION ...] CHANNEL_DIR_OR_URL",
		Short: "Verify a channel as a node would: metadata, documents and artifacts; exit 2 on a refusal",
		Long: `Starts from ROOT (the trust anchor, obtained out of band, never from the
channel), follows the channel's root rotations, verifies timestamp,
snapshot and targets, then every document (index, manifests, patch
catalogs, tools/sentinel.json) and every artifact they list, one line
each. With --release, only the artifacts of those releases and of their
patch catalogs (and the newest sentinel build of each platform), as
'channel copy --release' copies them into a registry. With --state-dir
the trusted metadata is kept there as on a node, so that a later run
refuses older metadata (a rollback).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Say = func(format string, args ...any) { fmt.Fprintf(cmd.OutOrStdout(), format, args...) }
			o.Warn = func(format string, args ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format, args...) }
			o.Registry.From = oci.FlagsOnly // no cluster file: advice names the flags
			return o.Run(cmd.Context(), args[0])
		},
	}
	cmd.Flags().StringVar(&o.Root, "root", "", "trust anchor: the channel's root as obtained from its publisher")
	cmd.Flags().StringVar(&o.StateDir, "state-dir", "", "keep trusted metadata here (default: none, each run starts from --root)")
	cmd.Flags().BoolVar(&o.AllowExpired, "allow-expired-metadata", false, "accept expired metadata (each document is reported; every other check runs): for air-gapped mirrors only")
	cmd.Flags().BoolVar(&o.MetadataOnly, "metadata-only", false, "do not read the artifacts")
	cmd.Flags().StringArrayVar(&o.Releases, "release", nil, "check the artifacts of this release and its patches only (and the newest sentinel build per platform), as `channel copy --release` copies them; repeat for more (default: every artifact; every document is checked still)")
	cmd.Flags().StringVar(&o.Registry.AuthFile, "registry-auth", "", "for an oci:// channel: the registry's credentials, a Docker config.json")
	cmd.Flags().StringVar(&o.Registry.CAFile, "registry-ca", "", "for an oci:// channel: the registry's CA (PEM)")
	return cmd
}
