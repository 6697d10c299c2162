package agent

import (
	"context"
	"fmt"

	"github.com/certagent/certagent/api"
)

// Source is where the account's certificates come from. *api.Client
// satisfies it through ClientSource; tests use in-memory sources.
type Source interface {
	// List returns the certificates, or api.ErrNotModified when etag (if
	// non-empty) still matches.
	List(ctx context.Context, etag string) (*api.ListResult, error)
}

// ClientSource adapts *api.Client to Source.
type ClientSource struct{ Client *api.Client }

// List calls ListIfChanged without a long-poll wait.
func (s ClientSource) List(ctx context.Context, etag string) (*api.ListResult, error) {
	return s.Client.ListIfChanged(ctx, etag, 0)
}

// NewClientSource builds the Source for cfg: the API client with the pinned
// HTTP client.
func NewClientSource(cfg *Config, userAgent string) (Source, error) {
	hc, err := HTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(cfg.ControlPlaneURL, cfg.AccountID, cfg.APIToken, api.WithHTTPClient(hc), api.WithUserAgent(userAgent))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ClientSource{Client: c}, nil
}
