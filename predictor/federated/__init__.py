"""Federated training of the cost GNN: DP-SGD on each device (Opacus), clipped and noised updates (Flower)."""
