package nstest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// JavaPath is the java launcher on Debian.
const JavaPath = "/usr/bin/java"

// fetchJava is a minimal Java HTTPS client run in source-file mode: exit 0
// with the body when the handshake succeeds, 1 on a handshake failure, 2
// on anything else.
const fetchJava = `import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class Fetch {
    public static void main(String[] args) {
        try {
            HttpClient c = HttpClient.newBuilder().proxy(HttpClient.Builder.NO_PROXY).build();
            HttpResponse<String> r = c.send(HttpRequest.newBuilder(URI.create(args[0])).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println(r.body());
            System.exit(r.statusCode() == 200 ? 0 : 2);
        } catch (javax.net.ssl.SSLHandshakeException e) {
            System.out.println("handshake: " + e);
            System.exit(1);
        } catch (Exception e) {
            System.out.println("error: " + e);
            System.exit(2);
        }
    }
}
`

// JavaTrusts reports whether a Java HTTPS client (a new JVM) using keystore
// as its trust store, with password pass, trusts s. Any outcome other than a
// clean success or a handshake rejection fails t.
func JavaTrusts(t testing.TB, s *Server, keystore, pass string) bool {
	t.Helper()
	java := Tool(t, JavaPath, "default-jdk-headless")
	src := filepath.Join(t.TempDir(), "Fetch.java")
	if err := os.WriteFile(src, []byte(fetchJava), 0o644); err != nil {
		t.Fatalf("nstest: %v", err)
	}
	path := NewPath("java")
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, java,
		"-Djavax.net.ssl.trustStore="+keystore, "-Djavax.net.ssl.trustStorePassword="+pass,
		src, s.URL+path)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	switch {
	case code == 0 && strings.Contains(string(out), Marker(path)) && s.Saw(path):
		return true
	case code == 1 && !s.Saw(path):
		return false
	}
	t.Fatalf("nstest: java client %s: exit %d (%v), server saw the request: %v\n%s", path, code, err, s.Saw(path), out)
	return false
}
