"""An example user package: two GNNs (GraphSAGE, GAT) and a dataset read from CSV files."""
