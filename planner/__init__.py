"""The partitioner: which device runs each ONNX node, before any code is generated.

Device catalog (`device_catalog.py`: what each device kind can run and how fast), per-op cost model (`cost_model.py`,
FPGA layers priced with the FPGA backend's own resource formulas), placement (`placement.py`: overrides, budgets,
subgraph grouping; `placement_solver.py`: MILP, greedy and local search), the compile plan (`plan.py`: `hcc plan`,
`--explain`, plan.json) and the host CPU's measured calibration (`calibrate.py`: `hcc devices --calibrate`).
It works on the ONNX graph only; the IR passes that compile its subgraphs live in `passes/`.
"""

# Wall-clock limit of the placement search (`--time-limit`): plans are deterministic unless it cuts the search short.
DEFAULT_TIME_LIMIT_S = 10.0
