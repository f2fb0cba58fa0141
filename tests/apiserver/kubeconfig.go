package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// kubeconfig mints a client certificate for a user from the data dir's CA and
// writes a kubeconfig for the server that DIR/kubeconfig points at.
func kubeconfig(args []string) error {
	fs := flag.NewFlagSet(prog+" kubeconfig", flag.ExitOnError)
	dataDir := fs.String("data-dir", "", "data directory of a server started with serve (required)")
	user := fs.String("user", "", "user name, the certificate's CN (required)")
	var groups stringList
	fs.Var(&groups, "group", "group, the certificate's O (repeatable)")
	out := fs.String("out", "", "write the kubeconfig to this file (mode 0600) instead of stdout")
	fs.Parse(args) //nolint:errcheck // ExitOnError
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("kubeconfig: unexpected arguments %q", fs.Args())
	case *dataDir == "":
		return errors.New("kubeconfig: --data-dir is required")
	case *user == "":
		return errors.New("kubeconfig: --user is required")
	}

	admin, err := clientcmd.LoadFromFile(filepath.Join(*dataDir, kubeconfigFile))
	if err != nil {
		return fmt.Errorf("kubeconfig: %w (run serve with this --data-dir first)", err)
	}
	cluster := admin.Clusters[clusterName]
	if cluster == nil {
		return fmt.Errorf("kubeconfig: %s has no cluster %q", filepath.Join(*dataDir, kubeconfigFile), clusterName)
	}
	ca, err := loadCA(*dataDir)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	certPEM, keyPEM, err := ca.issue(clientTemplate(*user, groups))
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	data, err := kubeconfigFor(cluster.Server, ca.certPEM, *user, certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	if *out == "" {
		_, err = os.Stdout.Write(data)
	} else {
		err = os.WriteFile(*out, data, 0o600)
	}
	return err
}
