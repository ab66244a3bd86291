// Command s3server is the S3-compatible server the backup tests start: gofakes3's S3 API over
// an in-memory backend, behind a check of every request's AWS Signature Version 4 against one
// access key pair (gofakes3 v1.2.0 checks none), with TLS when a certificate is given. The
// check follows the specification on its own, independently of the agent's Python signer: the
// canonical request from what arrived on the wire, the signing key, and the payload's SHA-256
// against the body actually received. Tests only; it keeps nothing on disk.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

type verifier struct {
	accessKeyID, secretAccessKey, region string
	next                                 http.Handler
}

func hmacSHA256(key []byte, text string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(text))
	return mac.Sum(nil)
}

// awsEscape is RFC 3986 percent-encoding: everything but A-Z a-z 0-9 - _ . ~ is escaped.
func awsEscape(text string) string {
	var out strings.Builder
	for _, b := range []byte(text) {
		if ('A' <= b && b <= 'Z') || ('a' <= b && b <= 'z') || ('0' <= b && b <= '9') || strings.IndexByte("-_.~", b) >= 0 {
			out.WriteByte(b)
		} else {
			fmt.Fprintf(&out, "%%%02X", b)
		}
	}
	return out.String()
}

func canonicalQuery(raw string) (string, error) {
	values, err := url.ParseQuery(raw)
	if err != nil {
		return "", err
	}
	var pairs []string
	for key, list := range values {
		for _, value := range list {
			pairs = append(pairs, awsEscape(key)+"="+awsEscape(value))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&"), nil
}

func (v *verifier) refuse(w http.ResponseWriter, code, message string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>", code, message)
}

func (v *verifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const scheme = "AWS4-HMAC-SHA256 "
	authorization := r.Header.Get("Authorization")
	if !strings.HasPrefix(authorization, scheme) {
		v.refuse(w, "AccessDenied", "requests must be signed with AWS Signature Version 4")
		return
	}
	fields := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(authorization, scheme), ",") {
		key, value, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[key] = value
	}
	credential := strings.Split(fields["Credential"], "/")
	if len(credential) != 5 || credential[0] != v.accessKeyID || credential[2] != v.region || credential[3] != "s3" || credential[4] != "aws4_request" {
		v.refuse(w, "InvalidAccessKeyId", "unknown access key id, region or service in the credential scope")
		return
	}
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	body, err := io.ReadAll(r.Body)
	if err != nil {
		v.refuse(w, "IncompleteBody", err.Error())
		return
	}
	actual := sha256.Sum256(body)
	if payloadHash != hex.EncodeToString(actual[:]) {
		v.refuse(w, "XAmzContentSHA256Mismatch", "x-amz-content-sha256 is not the SHA-256 of the body")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	query, err := canonicalQuery(r.URL.RawQuery)
	if err != nil {
		v.refuse(w, "InvalidRequest", err.Error())
		return
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	var headers strings.Builder
	for _, name := range signed {
		value := r.Header.Get(name)
		if name == "host" {
			value = r.Host
		}
		headers.WriteString(name + ":" + strings.TrimSpace(value) + "\n")
	}
	canonical := strings.Join([]string{r.Method, r.URL.EscapedPath(), query, headers.String(), fields["SignedHeaders"], payloadHash}, "\n")
	digest := sha256.Sum256([]byte(canonical))
	amzDate := r.Header.Get("X-Amz-Date")
	scope := strings.Join(credential[1:], "/")
	toSign := strings.Join([]string{"AWS4-HMAC-SHA256", amzDate, scope, hex.EncodeToString(digest[:])}, "\n")
	key := hmacSHA256([]byte("AWS4"+v.secretAccessKey), credential[1])
	for _, part := range credential[2:] {
		key = hmacSHA256(key, part)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) || !strings.HasPrefix(amzDate, credential[1]) {
		v.refuse(w, "SignatureDoesNotMatch", "the request signature does not match")
		return
	}
	v.next.ServeHTTP(w, r)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	bucket := flag.String("bucket", "", "bucket to create at start")
	accessKey := flag.String("access-key", "", "ACCESS_KEY_ID:SECRET_ACCESS_KEY the requests must be signed with")
	region := flag.String("region", "us-east-1", "region the requests must be signed for")
	certFile := flag.String("tls-cert", "", "serve HTTPS with this certificate (PEM)")
	keyFile := flag.String("tls-key", "", "and this private key (PEM)")
	portFile := flag.String("port-file", "", "write the port listened on to this file once listening")
	flag.Parse()

	id, secret, ok := strings.Cut(*accessKey, ":")
	if !ok || id == "" || secret == "" {
		log.Fatal("s3server: --access-key ACCESS_KEY_ID:SECRET_ACCESS_KEY is required")
	}
	backend := s3mem.New()
	if *bucket != "" {
		if err := backend.CreateBucket(*bucket); err != nil {
			log.Fatalf("s3server: creating bucket %s: %v", *bucket, err)
		}
	}
	faker := gofakes3.New(backend, gofakes3.WithHostBucket(false), gofakes3.WithLogger(gofakes3.DiscardLog()))
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("s3server: %v", err)
	}
	if *portFile != "" {
		port := listener.Addr().(*net.TCPAddr).Port
		if err := os.WriteFile(*portFile, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			log.Fatalf("s3server: %v", err)
		}
	}
	server := &http.Server{Handler: &verifier{id, secret, *region, faker.Server()}}
	if *certFile != "" {
		err = server.ServeTLS(listener, *certFile, *keyFile)
	} else {
		err = server.Serve(listener)
	}
	log.Fatalf("s3server: %v", err)
}
