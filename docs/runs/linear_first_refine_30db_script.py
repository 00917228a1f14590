"""linear_first + refine with the exact-NLL phase choice, one table-A cell (sys.argv: data snr seed)."""
import sys, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
sys.path.insert(0, "studies")
from thesis_tables import make_scene
from nisca import fit
data, snr, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
scene = make_scene(data, snr, seed, 3000, "channel")
t = time.time()
r = fit("nisca", scene, {"seed": seed, "max_epochs": 300, "init": "mves", "linear_first": True, "refine_epochs": 300,
                         "latent_dim": 3}, progress_bar=False)
m = r.metrics
print(data, snr, seed, f"mse={m['abundance_mse']:.3e} r2={m['r2_nonlinearity']:.4f} kept_nl={m['nonlinearity_kept']} "
      f"lin={m.get('val_loss_linear_refined')} nl={m.get('val_loss_nonlinear_refined')} {time.time()-t:.0f}s", flush=True)
