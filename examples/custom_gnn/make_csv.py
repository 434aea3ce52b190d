"""Write Cora (PyG's Planetoid files under the data root) as the two CSV files that
``custom_gnn.data.load_csv_graph`` reads, so the example runs on real data.

    python examples/custom_gnn/make_csv.py --data-root "$GNN_SEARCH_DATA"

writes ``<data root>/cora_csv/nodes.csv`` and ``edges.csv``.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from torch_geometric.datasets import Planetoid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("GNN_SEARCH_DATA"),
                        help="folder holding Cora/raw/ (default: $GNN_SEARCH_DATA)")
    parser.add_argument("--folder", default="cora_csv", help="output folder, under the root")
    args = parser.parse_args()
    if not args.data_root:
        parser.error("--data-root is required (or set GNN_SEARCH_DATA)")
    root = Path(args.data_root)
    if not (root / "Cora" / "raw").is_dir():
        parser.error(f"{root / 'Cora' / 'raw'} not found: copy Cora's raw Planetoid files "
                     "there (README, 'Datasets')")
    data = Planetoid(str(root), "Cora")[0]
    out = root / args.folder
    out.mkdir(exist_ok=True)
    with open(out / "nodes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "features"])
        for i in range(data.num_nodes):
            words = data.x[i].nonzero().flatten().tolist()
            w.writerow([f"paper{i}", int(data.y[i]), " ".join(map(str, words))])
    src, dst = data.edge_index
    with open(out / "edges.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["src", "dst"])
        for s, d in zip(src.tolist(), dst.tolist(), strict=True):
            if s < d:  # one row per undirected edge
                w.writerow([f"paper{s}", f"paper{d}"])
    print(f"wrote {out / 'nodes.csv'} ({data.num_nodes} nodes) and {out / 'edges.csv'}")


if __name__ == "__main__":
    main()
