package publish

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/regmend/regmend/resolver/registry"
)

// newRemote returns the heal engine's registry client for repo, reaching
// its registry as go-containerregistry would: over plain HTTP when ggcr
// says so (localhost, loopback and private addresses, name.Insecure),
// through o's transport, with o's credentials, which only ever go to that
// registry's own host (and its token server, by containerd's authorizer).
func newRemote(repo name.Repository, o *options) (*registry.Remote, error) {
	transport := o.transport
	if transport == nil {
		transport = docker.DefaultHTTPTransport(nil)
	}
	client := &http.Client{Transport: transport}
	auth, err := authorizer(repo, o, client)
	if err != nil {
		return nil, err
	}
	plain := repo.Registry.Scheme() == "http"
	defaults := docker.ConfigureDefaultRegistries(
		docker.WithClient(client),
		docker.WithAuthorizer(auth),
		docker.WithPlainHTTP(func(string) (bool, error) { return plain, nil }),
	)
	hosts := func(host string) ([]docker.RegistryHost, error) {
		if host != repo.RegistryStr() {
			return nil, fmt.Errorf("registry %s: publish reaches only %s: %w", host, repo.RegistryStr(), errdefs.ErrPermissionDenied)
		}
		all, err := defaults(host)
		if err != nil {
			return nil, err
		}
		if o.userAgent != "" {
			for i := range all {
				all[i].Header = http.Header{"User-Agent": {o.userAgent}}
			}
		}
		return all, nil
	}
	return registry.NewRemote(registry.WithRegistryHosts(hosts), registry.WithRegistries(repo.RegistryStr()))
}

// authorizer maps go-containerregistry's credentials onto containerd's
// docker authorizer: a username and password, or an identity token (an
// OAuth refresh token, sent with no username as containerd expects), or a
// registry token, sent as is as a bearer token.
func authorizer(repo name.Repository, o *options, client *http.Client) (docker.Authorizer, error) {
	auth := o.auth
	if o.keychain != nil {
		var err error
		if auth, err = o.keychain.Resolve(repo); err != nil {
			return nil, fmt.Errorf("credentials for %s from the keychain: %w: %w", repo.RegistryStr(), err, errdefs.ErrUnauthenticated)
		}
	}
	cfg, err := authn.Authorization(o.ctx, auth)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w: %w", repo.RegistryStr(), err, errdefs.ErrUnauthenticated)
	}
	if cfg.RegistryToken != "" {
		return bearer{host: repo.RegistryStr(), token: cfg.RegistryToken}, nil
	}
	user, secret := cfg.Username, cfg.Password
	if user == "" && secret == "" && cfg.Auth != "" {
		// docker config.json's "auth": base64 of user:password.
		b, err := base64.StdEncoding.DecodeString(cfg.Auth)
		u, p, ok := strings.Cut(string(b), ":")
		if err != nil || !ok {
			return nil, fmt.Errorf("credentials for %s: auth is not base64 of user:password: %w", repo.RegistryStr(), errdefs.ErrInvalidArgument)
		}
		user, secret = u, p
	}
	if cfg.IdentityToken != "" {
		user, secret = "", cfg.IdentityToken
	}
	host := repo.RegistryStr()
	creds := func(h string) (string, string, error) {
		if h != host {
			return "", "", nil // never hand the registry's secret to another host
		}
		return user, secret, nil
	}
	aopts := []docker.AuthorizerOpt{docker.WithAuthClient(client), docker.WithAuthCreds(creds)}
	if o.userAgent != "" {
		aopts = append(aopts, docker.WithAuthHeader(http.Header{"User-Agent": {o.userAgent}}))
	}
	return docker.NewDockerAuthorizer(aopts...), nil
}

// bearer sends a registry token (authn.AuthConfig.RegistryToken) to the
// registry's host on every request, as go-containerregistry does.
type bearer struct{ host, token string }

func (b bearer) Authorize(_ context.Context, req *http.Request) error {
	if req.URL.Host == b.host {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	return nil
}

// AddResponses is told of a 401: a registry that refuses its own token
// cannot be answered with another.
func (b bearer) AddResponses(_ context.Context, _ []*http.Response) error {
	return fmt.Errorf("registry %s refused the registry token: %w", b.host, errdefs.ErrUnauthenticated)
}
