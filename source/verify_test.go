package source_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sentinel-paas/sentinel/fixtures"
	"github.com/sentinel-paas/sentinel/release"
	"github.com/sentinel-paas/sentinel/source"
)

// TestChannelVerifyUnknownReleaseIsBadInput: `channel verify --release`
// of a release the channel does not list is the operator's mistake: one
// error naming the release and those the channel has, and no REFUSED
// verdict, which would blame the channel.
func TestChannelVerifyUnknownReleaseIsBadInput(t *testing.T) {
	served, err := fixtures.ServeChannel(t.TempDir(), fixtures.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	var said strings.Builder
	say := func(format string, args ...any) { fmt.Fprintf(&said, format, args...) }
	err = source.ChannelCheck{Root: served.RootFile, Releases: []string{"9.9.9"}, Say: say, Warn: say}.Run(context.Background(), served.RepoDir)
	var ue *release.UnknownReleaseError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "release 9.9.9 is not offered by the channel (it offers 3.4.1") {
		t.Errorf("verify --release 9.9.9: %v; want the release named as not in the channel, with those it has", err)
	}
	if strings.Contains(said.String(), "REFUSED") {
		t.Errorf("verify --release 9.9.9 gave a verdict on the channel:\n%s", said.String())
	}
}
