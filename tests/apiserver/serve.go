package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// saIssuer is fixed rather than derived from the (possibly changing) port so
// that service account tokens stay valid across restarts.
const saIssuer = "https://kubernetes.default.svc.cluster.local"

// logFileName, in the data dir, collects the apiserver's and etcd's logs.
const logFileName = "apiserver.log"

// shutdownDeadline bounds a graceful shutdown before we exit regardless.
const shutdownDeadline = 5 * time.Second

// serve runs etcd and kube-apiserver until SIGTERM/SIGINT (or stdin EOF with
// --stop-on-stdin-eof), then stops the apiserver and then etcd.
func serve(args []string) error {
	fs := flag.NewFlagSet(prog+" serve", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "directory for certificates, kubeconfig, logs and etcd data; created if missing, reused on restart (required)")
	bind := fs.String("bind-address", "127.0.0.1", "IP address to serve on")
	advertise := fs.String("advertise-address", "", "IP address the apiserver advertises and the kubeconfig points at (default: the bind address, or loopback if that is unspecified)")
	port := fs.Int("secure-port", 0, "HTTPS port; 0 picks a free one")
	serviceRange := fs.String("service-cluster-ip-range", "10.96.0.0/16,fd00:10:96::/112", "service CIDR, or two comma-separated CIDRs for dual-stack")
	stopOnEOF := fs.Bool("stop-on-stdin-eof", false, "also shut down when stdin reaches EOF, so the server dies with whoever holds the pipe")
	clusterEndpoint := fs.String("cluster-endpoint", "", "serve a real cluster (kubelets, controller-manager, scheduler) whose Pods reach this server at this IP address, the \"kubernetes\" Service's endpoint: Node authorization, ServiceAccount admission and a kubelet client certificate on (default: API objects only, nothing runs Pods)")
	fs.Parse(args) //nolint:errcheck // ExitOnError
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	if *dataDir == "" {
		return errors.New("serve: --data-dir is required")
	}
	bindIP := net.ParseIP(*bind)
	if bindIP == nil {
		return fmt.Errorf("serve: --bind-address %q is not an IP address", *bind)
	}
	advertiseIP := bindIP
	switch {
	case *advertise != "":
		if advertiseIP = net.ParseIP(*advertise); advertiseIP == nil {
			return fmt.Errorf("serve: --advertise-address %q is not an IP address", *advertise)
		}
	case bindIP.Equal(net.IPv4zero):
		advertiseIP = net.IPv4(127, 0, 0, 1)
	case bindIP.Equal(net.IPv6unspecified):
		advertiseIP = net.IPv6loopback
	}
	var endpointIP net.IP
	if *clusterEndpoint != "" {
		if endpointIP = net.ParseIP(*clusterEndpoint); endpointIP == nil {
			return fmt.Errorf("serve: --cluster-endpoint %q is not an IP address", *clusterEndpoint)
		}
	}
	serviceIPs, err := firstServiceIPs(*serviceRange)
	if err != nil {
		return fmt.Errorf("serve: --service-cluster-ip-range %q: %w", *serviceRange, err)
	}

	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	path := func(name string) string { return filepath.Join(*dataDir, name) }
	lock, err := lockDataDir(*dataDir)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer lock.Close()

	// The apiserver (a few hundred lines per start even at -v=0), etcd and
	// grpc all log to os.Stderr. Send that to a file and keep the real
	// stderr for our own few lines, which harnesses read.
	logFile, err := os.OpenFile(path(logFileName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	stderr := os.Stderr
	os.Stderr = logFile
	defer func() { os.Stderr = stderr }()

	// Creating the command installs the SIGTERM/SIGINT handler (once per
	// process); its context governs everything below.
	cmd := app.NewAPIServerCommand()
	ctx := cmd.Context()
	if *stopOnEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin) //nolint:errcheck // EOF or error: the parent is gone either way
			genericapiserver.RequestShutdown()
		}()
	}
	go func() {
		<-ctx.Done()
		// Shutdown takes about a second (mostly http2's GOAWAY grace for the
		// apiserver's loopback connections). If it gets stuck, don't outlive
		// the test that started us by much.
		time.Sleep(shutdownDeadline)
		fmt.Fprintf(stderr, "%s: shutdown took over %v, exiting (log: %s)\n", prog, shutdownDeadline, path(logFileName))
		os.Exit(1)
	}()

	ports, err := reservePorts(net.JoinHostPort(*bind, strconv.Itoa(*port)), "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("serve: %w (--secure-port 0 picks a free port)", err)
	}
	server := "https://" + net.JoinHostPort(advertiseIP.String(), strconv.Itoa(ports[0]))
	adminTLS, err := writeServerFiles(*dataDir, server, append([]net.IP{bindIP, advertiseIP, endpointIP}, serviceIPs...)...)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	etcd, etcdURL, err := startEtcd(ctx, path("etcd"), ports[1], ports[2])
	if err != nil {
		if ctx.Err() != nil {
			return nil // asked to stop while starting
		}
		return err
	}
	defer etcd.Close()

	flags := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + *bind,
		"--secure-port=" + strconv.Itoa(ports[0]),
		"--tls-cert-file=" + path(servingCertFile),
		"--tls-private-key-file=" + path(servingKeyFile),
		"--client-ca-file=" + path(caCertFile),
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + path(saKeyFile),
		"--service-account-signing-key-file=" + path(saKeyFile),
		"--service-cluster-ip-range=" + *serviceRange,
		"--allow-privileged=true",
		// End watches at shutdown instead of letting them hold it up for
		// the 60s request timeout.
		"--shutdown-watch-termination-grace-period=1s",
		"--v=0",
	}
	if endpointIP == nil {
		flags = append(flags,
			"--advertise-address="+advertiseIP.String(),
			"--authorization-mode=RBAC",
			// No controller-manager runs, so nothing would create the default
			// ServiceAccount this plugin insists on.
			"--disable-admission-plugins=ServiceAccount",
			// Loopback advertise addresses are not valid endpoints for the
			// "kubernetes" Service.
			"--endpoint-reconciler-type=none",
		)
	} else {
		if err := writeKubeletClientFiles(*dataDir); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		flags = append(flags,
			"--advertise-address="+endpointIP.String(),
			"--authorization-mode=Node,RBAC",
			"--kubelet-client-certificate="+path(kubeletClientCertFile),
			"--kubelet-client-key="+path(kubeletClientKeyFile),
			// Nodes have no DNS names to reach them by.
			"--kubelet-preferred-address-types=InternalIP",
		)
	}
	cmd.SetArgs(flags)
	go announceWhenReady(ctx, stderr, server, adminTLS)
	if err := cli.RunNoErrOutput(cmd); err != nil {
		return fmt.Errorf("kube-apiserver: %w (log: %s)", err, path(logFileName))
	}
	return nil
}

// lockDataDir locks dir for as long as the returned file stays open: a second
// server on the same dir would rewrite the first one's kubeconfig and then hang
// on etcd's database lock. It waits for a previous server that is still
// shutting down, which takes at most shutdownDeadline.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(shutdownDeadline + time.Second)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("data dir %s is in use by another server: %w", dir, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reservePorts listens on each address (port 0: any free port) and returns
// the ports after closing all listeners, so the picked ports are distinct.
// Someone else could grab one before we reuse it, but that is unlikely.
func reservePorts(addrs ...string) ([]int, error) {
	var ports []int
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeServerFiles creates (or reuses) the data dir's CA and service account
// key, issues a fresh serving cert and admin client cert, writes the admin
// kubeconfig for server, and returns the admin's TLS client config.
func writeServerFiles(dir, server string, ips ...net.IP) (*tls.Config, error) {
	ca, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	if err := loadOrCreateKey(filepath.Join(dir, saKeyFile)); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := ca.issue(servingTemplate(ips...))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, servingCertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, servingKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}

	const admin = "herald-admin"
	certPEM, keyPEM, err = ca.issue(clientTemplate(admin, []string{"system:masters"}))
	if err != nil {
		return nil, err
	}
	kubeconfig, err := kubeconfigFor(server, ca.certPEM, admin, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, kubeconfigFile), kubeconfig, 0o600); err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}, nil
}

// writeKubeletClientFiles issues the certificate the apiserver presents to
// kubelets (logs, exec), as a cluster admin.
func writeKubeletClientFiles(dir string) error {
	ca, err := loadCA(dir)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.issue(clientTemplate("herald-apiserver-kubelet-client", []string{"system:masters"}))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, kubeletClientCertFile), certPEM, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, kubeletClientKeyFile), keyPEM, 0o600)
}

// firstServiceIPs is the first address of each service CIDR: the
// "kubernetes" Service's ClusterIPs, by which Pods reach the server.
func firstServiceIPs(ranges string) ([]net.IP, error) {
	var ips []net.IP
	for _, cidr := range strings.Split(ranges, ",") {
		_, network, err := net.ParseCIDR(strings.TrimSpace(cidr))
		if err != nil {
			return nil, err
		}
		ip := slices.Clone(network.IP)
		ip[len(ip)-1]++
		ips = append(ips, ip)
	}
	return ips, nil
}

// startEtcd runs a single-member etcd inside this process on loopback ports
// and returns it with its client URL once it is ready.
func startEtcd(ctx context.Context, dir string, clientPort, peerPort int) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true // test data: speed over crash safety
	cfg.LogLevel = "error"
	client := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, client.String(), nil
	case err = <-e.Err():
	case <-ctx.Done():
		err = ctx.Err()
	}
	e.Close()
	return nil, "", fmt.Errorf("etcd: %w", err)
}

// announceWhenReady prints the line harnesses wait for once /readyz is ok.
func announceWhenReady(ctx context.Context, stderr io.Writer, server string, tlsConfig *tls.Config) {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}, Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Get(server + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Fprintf(stderr, "%s: serving on %s\n", prog, server)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
