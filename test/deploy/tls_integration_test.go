//go:build integration

package deploy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/leasehold/leasehold/internal/proc"
)

// tlsFixture is a self-signed serving certificate for 127.0.0.1, standing
// in for the Secret leasehold-gateway-tls, and a client that trusts it.
type tlsFixture struct {
	dir      string
	certPEM  []byte
	keyPEM   []byte
	client   *http.Client
	writeErr error
	written  sync.Once
}

var tlsOnce = sync.OnceValues(newTLSFixture)

// testTLS returns the test binary's one fixture.
func testTLS(t testing.TB) *tlsFixture {
	t.Helper()
	f, err := tlsOnce()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newTLSFixture() (*tlsFixture, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "leasehold-gateway.leasehold-system.svc"},
		DNSNames:              []string{"leasehold-gateway.leasehold-system.svc"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tlsFixture{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		client: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		},
	}, nil
}

// files writes the pair once, into a directory that outlives the tests
// of the binary, and returns the certificate and key paths.
func (f *tlsFixture) files(t testing.TB) (cert, key string) {
	t.Helper()
	f.written.Do(func() {
		f.dir, f.writeErr = os.MkdirTemp("", "leasehold-deploy-tls-")
		if f.writeErr != nil {
			return
		}
		if f.writeErr = os.WriteFile(filepath.Join(f.dir, "tls.crt"), f.certPEM, 0o600); f.writeErr != nil {
			return
		}
		f.writeErr = os.WriteFile(filepath.Join(f.dir, "tls.key"), f.keyPEM, 0o600)
	})
	if f.writeErr != nil {
		t.Fatal(f.writeErr)
	}
	return filepath.Join(f.dir, "tls.crt"), filepath.Join(f.dir, "tls.key")
}

// waitReady polls url (http or https, trusting testTLS) until it answers
// 200, the process exits or ctx ends.
func waitReady(ctx context.Context, t testing.TB, p *proc.Process, url string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := testTLS(t).client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not ready at %s: %v\n%s", p.Name, url, ctx.Err(), p.Tail(4096))
		case <-tick.C:
		}
	}
}
