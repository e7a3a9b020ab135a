"""Kubernetes' own shapes, pure: ``metav1.Status`` bodies, RequestInfo, kubeconfig documents."""
