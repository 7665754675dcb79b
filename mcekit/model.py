"""MCEVAE: encoder ▸ heads ▸ priors ▸ decoder ▸ group action. Knows the interfaces, no particular component."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mcekit.data.sources import DataError
from mcekit.groups.base import LieGroup, act, pose_components
from mcekit.half_turn_merge import HalfTurnRepair, repair_half_turn_splits
from mcekit.moments import Arrow, mass_centred, moment_pose
from mcekit.orientation import HalfTurnDetector, half_turn
from mcekit.priors.base import LatentPrior, Posterior
from mcekit.readout import NeighbourReadout
from mcekit.self_label import Augmentation, SelfLabelClassifier, equipartition
from mcekit.upright import UprightRegressor, rotations

CONTENT_BLOCKS = ("cluster", "style")
#: |τ_i| at most this in the decoder path (rotation ±344°, scale ×400, shift ±3 widths)
POSE_COORDINATE_BOUND = 6.0
HALF_TURN = torch.diag(torch.tensor([-1.0, -1.0, 1.0]))


@dataclass
class Encoded:
    """What the encoder says about a batch: one posterior per latent block and the initial pose g₀."""

    posteriors: dict[str, Posterior]
    pose_init: torch.Tensor
    aligned: torch.Tensor          # what the encoder saw: x moved back by g₀
    turned: torch.Tensor           # (B,) bool: g₀ includes a half turn the detector chose


@dataclass
class MCEOutput:
    """A forward pass, named."""

    recon: torch.Tensor            # x̂ = act(x̃, g), probabilities (B,C,H,W)
    canonical: torch.Tensor        # x̃, probabilities
    canonical_logits: torch.Tensor
    pose: torch.Tensor             # g = g₀ ∘ exp(τ), (B,3,3)
    pose_init: torch.Tensor        # g₀, (B,3,3)
    posteriors: dict[str, Posterior]
    aligned: torch.Tensor          # the encoder's input, x moved back by g₀
    turned: torch.Tensor           # (B,) bool: g₀ includes a half turn the detector chose
    samples: dict[str, torch.Tensor] = field(default_factory=dict)


class MCEVAE(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], encoder: nn.Module, decoder_factory: Any,
                 group: LieGroup, priors: dict[str, LatentPrior], pose_init: str = "moments",
                 padding: str = "zeros", half_turns: HalfTurnDetector | None = None,
                 upright: UprightRegressor | None = None, readout: NeighbourReadout | None = None,
                 classifier: SelfLabelClassifier | None = None) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.encoder = encoder
        self.group = group
        self.pose_from_moments = pose_init != "none"
        self.moment_arrow: Arrow = "skew" if pose_init == "moments_skew" else "half_plane"
        self.half_turns = half_turns
        self.upright = upright
        self.readout = readout
        self.classifier = classifier  # self-labelling, on top of the readout
        self.padding = padding
        self.priors = nn.ModuleDict({k: p for k, p in priors.items() if k != "pose" or group.dim > 0})
        self.heads = nn.ModuleDict({k: nn.Linear(encoder.feature_dim, p.n_params) for k, p in self.priors.items()})
        if "pose" in self.heads:  # start at the identity (or at the moment estimate)
            nn.init.zeros_(self.heads["pose"].weight)
            nn.init.zeros_(self.heads["pose"].bias)
        self.decoder = decoder_factory(sum(self.priors[k].decoder_dim for k in CONTENT_BLOCKS))

    @property
    def cluster_prior(self) -> LatentPrior:
        return self.priors["cluster"]  # type: ignore[return-value]

    def assignments(self, cluster_posterior: Posterior, x: torch.Tensor | None = None,
                    aligned: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Each image's cluster by every fitted stage, in order: the cluster prior ('prior'), the neighbour
        readout ('neighbours'), the self-labelling classifiers ('classifier', which read the images ``x`` and
        their ``aligned`` encoder inputs). The last is the model's assignment."""
        out = {"prior": self.cluster_prior.assign(cluster_posterior)}
        if self.readout is not None and self.readout.is_fitted:
            out["neighbours"] = self.readout.assign(cluster_posterior.mean)
        if self.classifier is not None and self.classifier.is_fitted:
            if x is None or aligned is None:
                raise ValueError("the self-labelling classifiers read the images: pass x and aligned")
            inputs = self.classifier_inputs(x, aligned)
            unsure = self.unsure_upright(inputs["centred"], self.classifier.unsure_ramp)
            out["classifier"] = self.classifier.assign(inputs, unsure)
        return out

    def assign(self, cluster_posterior: Posterior, x: torch.Tensor | None = None,
               aligned: torch.Tensor | None = None) -> torch.Tensor:
        """Each image's cluster: by the last fitted stage of ``assignments``."""
        return list(self.assignments(cluster_posterior, x, aligned).values())[-1]

    @property
    def readout_pending(self) -> bool:
        """The model has a readout (or self-labelling classifiers) not fitted yet."""
        return ((self.readout is not None and not self.readout.is_fitted)
                or (self.classifier is not None and not self.classifier.is_fitted))

    def classifier_inputs(self, x: torch.Tensor, aligned: torch.Tensor) -> dict[str, torch.Tensor]:
        """The views the self-labelling classifiers can read: the encoder's input, and x mass-centred as it came
        (also what the learned upright reads)."""
        return {"aligned": aligned, "centred": self.centred(x)}

    @torch.no_grad()
    def unsure_upright(self, centred: torch.Tensor, ramp: float = 0.0) -> torch.Tensor | None:
        """How unsure the learned upright is of each image (B,) in [0, 1], read from the images mass-centred: 1
        where it leaves the moment angle, falling linearly to 0 over ``ramp`` above its confidence threshold
        (none: 0 or 1); None without a learned upright."""
        return None if self.upright is None else self.upright.unsureness(centred, ramp)

    @torch.no_grad()
    def encoded_chunks(self, images: torch.Tensor, upright_angle: torch.Tensor | None = None,
                       chunk: int = 500) -> Iterator[tuple[torch.Tensor, Encoded]]:
        """A whole image set (the training set) encoded in chunks, in evaluation mode on the model's device: each
        chunk's images there and their encoding; ``upright_angle`` as in ``encode``."""
        device = next(self.parameters()).device
        self.eval()
        for i in range(0, images.shape[0], chunk):
            x = images[i:i + chunk].to(device)
            yield x, self.encode(x, None if upright_angle is None else upright_angle[i:i + chunk].to(device))

    def encoded_posterior(self, images: torch.Tensor, block: str = "cluster",
                          upright_angle: torch.Tensor | None = None) -> Posterior:
        """One block's posterior for a whole image set; ``upright_angle`` as in ``encode``."""
        return joined_posterior([enc.posteriors[block] for _, enc in self.encoded_chunks(images, upright_angle)])

    def fit_readout(self, images: torch.Tensor, upright_angle: torch.Tensor | None = None,
                    classifier: Any = None, batch_size: int = 100, seed: int = 0, progress: bool = False,
                    half_turn_merge: Any = None) -> list[HalfTurnRepair]:
        """Fit the neighbour readout to the cluster means and mixture clusters of ``images`` (the training set);
        ``upright_angle`` as in ``encode``. ``classifier``: the self-labelling settings (a ``ClassifierConfig``),
        when the model has classifiers: they are then trained on the images the readout is surest of.
        ``half_turn_merge`` (a ``HalfTurnMergeConfig``): repair the mixture's clusters first where a kind is split
        by its frame's half turn (see ``mcekit.half_turn_merge``); the repairs made are returned."""
        if self.classifier is not None and classifier is None:
            raise ValueError("this model has self-labelling classifiers: pass their settings to fit them")
        posteriors, views, unsure, turned_means = [], [], [], []
        with torch.no_grad():
            for x, enc in self.encoded_chunks(images, upright_angle):
                posteriors.append(enc.posteriors["cluster"])
                if half_turn_merge is not None:
                    turned_means.append(self.posteriors_of_aligned(half_turn(enc.aligned))["cluster"].mean)
                if self.classifier is not None:
                    views.append(self.classifier_inputs(x, enc.aligned))
                    if classifier.unsure_teaching == "turns" and self.upright is not None:
                        # taught at the hard threshold: the ramp is the final assignment's reading only
                        unsure.append(self.unsure_upright(views[-1]["centred"]))
            posterior = joined_posterior(posteriors)
            clusters = self.cluster_prior.assign(posterior)
            self.readout.fit(posterior.mean, clusters)
            repairs: list[HalfTurnRepair] = []
            if half_turn_merge is not None:
                clusters, repairs = repair_half_turn_splits(
                    clusters, self.readout.assign(torch.cat(turned_means)), posterior.mean,
                    self.cluster_prior.n_clusters, half_turn_merge.min_share, half_turn_merge.min_excess,
                    half_turn_merge.max_repairs, seed)
                self.readout.fit(posterior.mean, clusters)
        if self.classifier is None:
            return repairs
        labels, agreement = self.readout.bank_agreement()
        keep = agreement >= classifier.min_agreement
        if not bool(keep.any()):
            raise ValueError(f"self-labelling: no training image's neighbours agree on {classifier.min_agreement:.0%} "
                             "of their votes (lower model.readout.classifier.min_agreement)")
        inputs = {view: torch.cat([v[view] for v in views]) for view in self.classifier.views}
        taught_unsure = torch.cat(unsure) if unsure else None
        device = labels.device
        augment = Augmentation(classifier.max_turn_deg, classifier.max_scale, classifier.max_shift_px,
                               classifier.cut_share, classifier.cut_distance)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # initialisation and dropout: the same classifiers on every fit of the same model
            for round_ in range(classifier.rounds):
                # the previous round's clusters (its own CNNs', not the kept rounds' together) teach, on every
                # training image, as each image's aligned view is taught: an unsure upright at its turns where
                # they are taught that way, else at one turn (then teaching the reading over all turns cost
                # 0.007-0.010 test ACC)
                if round_:
                    log_probs = self.classifier.log_probs(inputs, taught_unsure, latest=True)
                    labels = equipartition(log_probs) if classifier.balanced else log_probs.argmax(1)
                    keep = torch.ones_like(keep)
                self.classifier.fit({view: images[keep] for view, images in inputs.items()}, labels[keep],
                                    classifier.epochs, batch_size, classifier.lr, augment, seed + round_, progress,
                                    round_, None if taught_unsure is None else taught_unsure[keep])
        return repairs

    def initial_pose(self, x: torch.Tensor) -> torch.Tensor:
        if self.pose_from_moments and self.group.dim > 0:
            return moment_pose(x, self.group, arrow=self.moment_arrow)
        return self.group.identity(x.shape[0], dtype=x.dtype, device=x.device)

    def moment_aligned(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The initial pose g₀ from moments (identity without) and x moved back by it."""
        g0 = self.initial_pose(x)
        return g0, (x if not self.pose_from_moments else act(x, self.group.inverse(g0), self.padding))

    def upright_inputs(self, x: torch.Tensor, g0: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """g₀ from moments (unless given), its angle φ, and x with its centre of mass moved to the centre: what
        the learned upright reads. Centred whatever the model's group: in data rotated about the grid centre,
        the mass's offset from that centre (half a pixel in mass-centred digits) turns with the image, a
        position cue to the angle that says nothing about shape."""
        g0 = self.initial_pose(x) if g0 is None else g0
        return g0, pose_components(g0)["angle"], self.centred(x)

    def centred(self, x: torch.Tensor) -> torch.Tensor:
        """x with its centre of mass moved to the centre, not turned."""
        return mass_centred(x, self.padding)

    def fit_upright(self, images: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int,
                    progress: bool = False) -> list[float]:
        """Fit the learned upright on the centred ``images`` (the training set); its loss per epoch."""
        device = next(self.upright.parameters()).device
        with torch.no_grad():
            centred = torch.cat([self.upright_inputs(images[i:i + 500].to(device))[2]
                                 for i in range(0, images.shape[0], 500)])
        return self.upright.fit(centred, epochs, batch_size, lr, seed, progress)

    def upright_angles(self, images: torch.Tensor) -> torch.Tensor:
        """The angle of each image's turned-upright start pose g₀∘R(c) (N,), in chunks on the model's device: for
        images the model sees again and again (the training set), since the regressor is frozen once fitted."""
        device = next(self.upright.parameters()).device
        with torch.no_grad():
            parts = []
            for i in range(0, images.shape[0], 500):
                _, angle, centred = self.upright_inputs(images[i:i + 500].to(device))
                parts.append(angle + self.upright.correction(centred, angle))
            return torch.cat(parts)

    def encode(self, x: torch.Tensor, upright_angle: torch.Tensor | None = None) -> Encoded:
        """``upright_angle``: the angle of each image's turned-upright start pose where already known (a training
        image's, looked up; a copy's, from its original's): the learned upright is then not run."""
        if self.upright is None:
            g0, x0 = self.moment_aligned(x)
        else:
            g0 = self.initial_pose(x)
            if upright_angle is None:
                _, angle, centred = self.upright_inputs(x, g0)
                correction = self.upright.correction(centred, angle)
            else:  # no centred image needed: one resampling less
                correction = upright_angle.to(g0) - pose_components(g0)["angle"]
            g0 = g0 @ rotations(correction.to(g0))  # g₀∘R(c): turned upright, in one resampling from x
            x0 = act(x, self.group.inverse(g0), self.padding)
        turned = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        if self.half_turns is not None:
            turned = self.half_turns.should_turn(x0)
            # g₀∘R(π): the same axis with the other arrow; the aligned image turns about its centre
            g0 = torch.where(turned[:, None, None], g0 @ HALF_TURN.to(g0), g0)
            x0 = torch.where(turned[:, None, None, None], half_turn(x0), x0)
        return Encoded(self.posteriors_of_aligned(x0), g0, x0, turned)

    def posteriors_of_aligned(self, x0: torch.Tensor) -> dict[str, Posterior]:
        """Posteriors of images already moved back by their initial pose (the encoder's own input)."""
        features = self.encoder(x0)
        return {k: self.priors[k].posterior(head(features)) for k, head in self.heads.items()}

    def pose_of(self, enc: Encoded, tau: torch.Tensor | None = None) -> torch.Tensor:
        if "pose" not in enc.posteriors:
            return enc.pose_init
        tau = enc.posteriors["pose"].mean if tau is None else tau
        # far outside any meaningful pose, so healthy runs never reach it; it stops a pose head that runs
        # away (an affine model's τ grew 0 → 16 in ten steps, then exp overflowed) while the pose KL, which
        # sees the unclamped posterior, pulls it back
        tau = tau.clamp(-POSE_COORDINATE_BOUND, POSE_COORDINATE_BOUND)
        return self.group.compose(enc.pose_init, self.group.exp(tau))

    def decode(self, content: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoder inputs per content block → canonical logits."""
        return self.decoder(torch.cat([content[k] for k in CONTENT_BLOCKS], dim=-1))

    def forward(self, x: torch.Tensor, sample: bool = True, upright_angle: torch.Tensor | None = None) -> MCEOutput:
        enc = self.encode(x, upright_angle)
        samples = {k: (self.priors[k].rsample(p) if sample else p.mean) for k, p in enc.posteriors.items()}
        g = self.pose_of(enc, samples.get("pose"))
        content = {k: (self.priors[k].decoder_input(enc.posteriors[k], samples[k]) if sample
                       else self.priors[k].point(enc.posteriors[k])) for k in CONTENT_BLOCKS}
        logits = self.decode(content)
        canonical = torch.sigmoid(logits)
        recon = act(canonical, g, self.padding)
        return MCEOutput(recon, canonical, logits, g, enc.pose_init, enc.posteriors, enc.aligned, enc.turned, samples)


def joined_posterior(parts: list[Posterior]) -> Posterior:
    """Chunks' posteriors of one block as one."""
    return Posterior(torch.cat([p.mean for p in parts]),
                     {key: torch.cat([p[key] for p in parts]) for key in parts[0].params})


def build_model(model_config: Any, image_shape: tuple[int, int, int], padding: str = "zeros") -> MCEVAE:
    group = model_config.group.build()
    latents = model_config.latents
    priors = {
        "cluster": latents.cluster.prior.build(latents.cluster.dim),
        "style": latents.style.prior.build(latents.style.dim),
        "pose": latents.pose.prior.build(group.dim),
    }
    c, h, w = image_shape

    def fitted(part: str, make: Any) -> Any:  # an encoder or decoder that cannot take these images: a data problem
        try:
            return make()
        except ValueError as exc:
            raise DataError(f"model.{part}: '{getattr(model_config, part).type}' does not fit the data's "
                            f"{c}×{h}×{w} images: {exc}") from None

    encoder = fitted("encoder", lambda: model_config.encoder.build(image_shape))
    turns = model_config.half_turns
    detector = None if turns is None else HalfTurnDetector(c, turns.reliable_within_deg, turns.margin)
    up = model_config.upright
    upright = None
    if up is not None:
        with torch.random.fork_rng(devices=[]):  # the other parameters start as they would without it
            upright = UprightRegressor(c, up.width, up.views, up.min_confidence, up.snap_deg,
                                       up.copies == "original")
    readout = None if model_config.readout is None else NeighbourReadout(model_config.readout.neighbours)
    classifier = None
    taught = None if readout is None else model_config.readout.classifier
    if taught is not None:
        with torch.random.fork_rng(devices=[]):  # the other parameters start as they would without it
            classifier = taught.build(image_shape, priors["cluster"].n_clusters)
    return MCEVAE(image_shape, encoder, lambda n: fitted("decoder", lambda: model_config.decoder.build(n, image_shape)),
                  group, priors, model_config.pose_init, padding, detector, upright, readout, classifier)
