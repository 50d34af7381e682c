package main

import (
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/sentinel-paas/sentinel/cache"
)

func newCacheCertCmd() *cobra.Command {
	var ips, names []string
	var outDir string
	var days int
	cmd := &cobra.Command{
		Use:   "cert --ip ADDRESS [--ip ADDRESS...] --out-dir DIR",
		Short: "Make a self-signed TLS certificate for the cache daemon and print its fingerprint to pin",
		Long: `Make a self-signed ECDSA P-256 certificate for the cache node's addresses
(the cluster reaches the cache node by IP, so each --ip goes in the
certificate) and write DIR/sentinel-d.crt and DIR/sentinel-d.key (0600).
It never replaces a file: remove the old pair first. Prints the
certificate's sha256 fingerprint, to pin in the cluster file. The daemon
picks up a new pair without a restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req cache.CertRequest
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return usagef("--ip %q is not an IP address", s)
				}
				req.IPs = append(req.IPs, ip)
			}
			req.DNSNames = names
			if len(req.IPs) == 0 {
				return usagef("--ip: give the cache node's address (repeat --ip for each address nodes use)")
			}
			if days < 1 || days > 3650 {
				return usagef("--days %d: between 1 and 3650", days)
			}
			req.ValidFor = time.Duration(days) * 24 * time.Hour
			c, err := cache.GenerateCert(req)
			if err != nil {
				return err
			}
			certPath, keyPath, err := cache.WriteCert(outDir, c)
			if err != nil {
				return usagef("%v", err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "certificate %s\nkey %s\nvalid until %s\nfingerprint %s\n", certPath, keyPath, c.NotAfter.UTC().Format(time.RFC3339), c.Fingerprint)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&ips, "ip", nil, "an IP address of the cache node (repeatable)")
	cmd.Flags().StringArrayVar(&names, "dns", nil, "a DNS name of the cache node (repeatable; optional)")
	cmd.Flags().StringVar(&outDir, "out-dir", "", "directory to write sentinel-d.crt and sentinel-d.key in (required)")
	cmd.Flags().IntVar(&days, "days", 825, "days the certificate is valid")
	_ = cmd.MarkFlagRequired("out-dir")
	return cmd
}

func newCacheDropInCmd() *cobra.Command {
	var config, out, owner string
	cmd := &cobra.Command{
		Use:   "dropin --config FILE",
		Short: "Let sentinel-d.service write the directories its configuration names (after moving cache_dir)",
		Long: `The sentinel-d.service unit runs under ProtectSystem=strict: the daemon can
write only its unit's ReadWritePaths. This writes a drop-in (default
` + cache.DefaultDropInPath + `) naming cache_dir (and channel_dir and
log_file's directory when elsewhere) from the configuration file, and
creates cache_dir if missing. With --owner, cache_dir is given to that
user. Then: systemctl daemon-reload; service sentinel-d restart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cache.LoadConfig(config)
			if err != nil {
				return err
			}
			if out == "-" {
				text, err := cache.SystemdDropIn(c, config)
				if err != nil {
					return err
				}
				fmt.Fprint(cmd.OutOrStdout(), text)
				return nil
			}
			if err := cache.InstallDropIn(c, config, out, owner); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; now run: systemctl daemon-reload && systemctl restart sentinel-d\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "/etc/sentinel/sentinel-d.yaml", "the daemon's configuration file")
	cmd.Flags().StringVar(&out, "out", cache.DefaultDropInPath, "the drop-in to write (- for standard output)")
	cmd.Flags().StringVar(&owner, "owner", "", "give cache_dir to this user (and its group), e.g. sentinel-d")
	return cmd
}
