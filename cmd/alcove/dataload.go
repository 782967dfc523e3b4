package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/alcove-io/alcove/engine/client"
	"github.com/alcove-io/alcove/engine/job/dataload"
	"github.com/alcove-io/alcove/engine/security"
	"github.com/alcove-io/alcove/extender/podpaths"
)

// startDataLoadController runs the DataLoad controller against the job
// master at jobMaster until ctx ends; wait joins it.
func startDataLoadController(ctx context.Context, kubeconfig, jobMaster string, tlsSrc *security.Source) (wait func() error, err error) {
	rc, err := kubeRESTConfig(kubeconfig, "alcove-job-master")
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create kubernetes client: %w", err)
	}
	jc, err := client.NewJobClient(jobMaster, tlsSrc)
	if err != nil {
		return nil, err
	}
	listers := podpaths.StartListers(ctx, cs, 10*time.Minute)
	c := dataload.New(dataload.Config{Dynamic: dyn, Kube: cs, Jobs: jc, Claims: &podpaths.Resolver{Objects: listers}})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, 2) }()
	return func() error {
		err := <-done
		jc.Close()
		return err
	}, nil
}

// kubeRESTConfig loads the kubeconfig file, or the in-cluster configuration
// when none is named, for a client that calls itself agent.
func kubeRESTConfig(kubeconfig, agent string) (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig) // "" = in-cluster
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %q: %w", kubeconfig, err)
	}
	rc.UserAgent = agent
	return rc, nil
}
