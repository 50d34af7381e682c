package cache

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client talks to a cache daemon's prefetch API: what
// `sentinel upgrade --download-only --cache-ip IP` uses to fill the cache
// node from the upstream.
type Client struct {
	BaseURL string // http://IP:PORT
	Token   string
	HTTP    *http.Client // nil: no proxy (the cache node is on the cluster's LAN)
	// PlainHTTP: the cluster file accepts plain HTTP to the daemon, and so
	// sending the token in clear. Without it an http:// BaseURL gets no token.
	PlainHTTP bool
}

// PrefetchError is a prefetch that the daemon refused or that failed.
type PrefetchError struct {
	URL string
	Msg string
}

func (e *PrefetchError) Error() string { return fmt.Sprintf("cache daemon %s: %s", e.URL, e.Msg) }

// Prefetch asks the daemon to fill itself with what req names, from the
// channel it verifies, reporting each event it streams back.
func (c *Client) Prefetch(ctx context.Context, req PrefetchRequest, onEvent func(PrefetchEvent)) (PrefetchResult, error) {
	if !strings.HasPrefix(c.BaseURL, "https://") && !c.PlainHTTP {
		return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: "the prefetch token is only sent over TLS: set cache.tls_fingerprint or cache.ca_file in the cluster file (or, knowing the token then crosses the network in clear, cache.plain_http: true)"}
	}
	url := strings.TrimRight(c.BaseURL, "/") + "/prefetch"
	body, err := json.Marshal(req)
	if err != nil {
		return PrefetchResult{}, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return PrefetchResult{}, err
	}
	hreq.Header.Set("Authorization", "Bearer "+c.Token)
	hreq.Header.Set("Content-Type", "application/json")
	client := c.HTTP
	if client == nil {
		client = DirectHTTP
	}
	resp, err := client.Do(hreq)
	if err != nil && ctx.Err() != nil {
		return PrefetchResult{}, fmt.Errorf("prefetch interrupted: %w; run the same command again to continue (finished downloads are kept, partial ones resume)", ctx.Err())
	}
	var ce *CertError
	if errors.As(err, &ce) {
		return PrefetchResult{}, ce // the token was not sent
	}
	if err != nil {
		return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: fmt.Sprintf("cannot reach it: %v (is `sentinel cache serve` running on the cache node, and is --cache-ip right?)", err)}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: "the prefetch token was refused: set the daemon's token in the cluster file's cache.token_file or $SENTINEL_CACHE_TOKEN"}
	case http.StatusForbidden:
		// The daemon says why: no token configured, or a token over plain HTTP.
		var refusal struct{ Error string }
		if json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&refusal) == nil && refusal.Error != "" {
			return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: refusal.Error}
		}
		return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: "prefetch is disabled on this daemon: give it a token_file in its configuration"}
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var refusal struct{ Error string }
		if json.Unmarshal(msg, &refusal) == nil && refusal.Error != "" {
			return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: fmt.Sprintf("refused (HTTP %d): %s", resp.StatusCode, refusal.Error)}
		}
		return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: fmt.Sprintf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(msg)))}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var kind struct{ Event string }
		if err := json.Unmarshal(sc.Bytes(), &kind); err != nil {
			return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: fmt.Sprintf("bad event %q", sc.Text())}
		}
		if kind.Event == "result" {
			var res PrefetchResult
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
				return PrefetchResult{}, err
			}
			if res.Failed > 0 {
				return res, &PrefetchError{URL: c.BaseURL, Msg: fmt.Sprintf("%d item(s) could not be fetched or stored in the cache (see the errors above); run the same command again to retry: finished downloads are kept, partial ones resume", res.Failed)}
			}
			return res, nil
		}
		var ev PrefetchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: fmt.Sprintf("bad event %q", sc.Text())}
		}
		if onEvent != nil {
			onEvent(ev)
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() != nil {
		return PrefetchResult{}, fmt.Errorf("prefetch interrupted: %w; run the same command again to continue (finished downloads are kept, partial ones resume)", ctx.Err())
	}
	if err := sc.Err(); err != nil {
		return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: fmt.Sprintf("connection lost during prefetch: %v; run the same command again to continue", err)}
	}
	return PrefetchResult{}, &PrefetchError{URL: c.BaseURL, Msg: "the daemon ended the prefetch without a result; run the same command again to continue"}
}
