package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // the components' --logging-format=json, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // the version metric, as upstream
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// components are the real Kubernetes components this binary also is, each
// run as its cmd/NAME main does. The lab runs them to make a real cluster:
// a kubelet and kube-proxy per node, the controller-manager and scheduler
// next to the API server.
var components = map[string]func() *cobra.Command{
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-proxy":              proxy.NewProxyCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
}

// runComponent runs component name with args and exits with its status.
func runComponent(name string, args []string) {
	// Components read os.Args for nothing but their name; give them the argv
	// they would see as standalone binaries.
	os.Args = append([]string{name}, args...)
	os.Exit(cli.Run(components[name]()))
}
