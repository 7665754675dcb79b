"""Self-labelling: classifiers taught by the readout's surest training images, then assigning every image."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError

from mcekit.config import ClassifierConfig, ConfigError, load_config
from mcekit.groups.base import act, pose_components
from mcekit.model import build_model
from mcekit.moments import moment_pose
from mcekit.readout import NeighbourReadout
from mcekit.self_label import Augmentation, SelfLabelClassifier, equipartition
from mcekit.upright import translations, turned


def bars(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 28×28 images of a vertical bar (label 0), a horizontal bar (1) or a cross (2), turned by up to ±10°."""
    labels = torch.randint(0, 3, (n,), generator=generator)
    images = torch.zeros(n, 1, 28, 28)
    images[labels != 1, 0, 6:22, 12:16] = 1.0
    images[labels != 0, 0, 12:16, 6:22] = 1.0
    images = turned(images, (torch.rand(n, generator=generator) * 2 - 1) * 0.17)
    return (images + 0.1 * torch.rand(images.shape, generator=generator)).clamp(0, 1), labels


def test_bank_agreement_leaves_each_entry_out_of_its_own_vote():
    readout = NeighbourReadout(neighbours=2)
    bank = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    # the third entry carries the far group's cluster: its two nearest others say 0, and it is theirs by 2 to 0
    readout.fit(bank, torch.tensor([0, 0, 1, 1, 1, 1]))
    clusters, share = readout.bank_agreement()
    assert clusters.tolist() == [0, 0, 0, 1, 1, 1]
    # the first entry's two nearest others are 0 (cluster 0) and 0.2 (cluster 1): a tie, won by the nearer
    assert share.tolist() == pytest.approx([0.5, 0.5, 1.0, 1.0, 1.0, 1.0])


def test_the_classifiers_learn_what_their_labels_share_and_stay_frozen():
    generator = torch.Generator().manual_seed(0)
    images, labels = bars(300, generator)
    classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned", "centred"], width=8)
    assert not classifier.is_fitted
    inputs = {"aligned": images, "centred": images}
    losses = classifier.fit(inputs, labels, epochs=4, batch_size=50, lr=3e-3, augment=Augmentation(10, 0.05, 1),
                            seed=0, progress=False)
    assert classifier.is_fitted and losses[-1] < losses[0]
    assert not any(p.requires_grad for p in classifier.parameters()) and not classifier.training
    test, truth = bars(200, generator)
    assert (classifier.assign({"aligned": test, "centred": test}) == truth).float().mean() >= 0.95
    # the views' log-probabilities are summed: each view's own share is a log-distribution
    log_probs = classifier.log_probs({"aligned": test, "centred": test})
    assert log_probs.shape == (200, 3) and bool((log_probs <= 0).all())


def test_augmentation_draws_uniform_turns_scales_and_shifts_within_their_bounds():
    augment = Augmentation(max_turn_deg=30, max_scale=0.1, max_shift_px=2)
    moves = augment.draw(20000, 28, torch.Generator().manual_seed(0))
    parts = pose_components(moves.double())
    angle, scale, shift_px = parts["angle"], parts["log_scale"].exp(), parts["translation"] * 14
    bound = torch.pi / 6
    assert float(angle.abs().max()) <= bound and float(angle.abs().max()) > 0.99 * bound
    assert float((scale - 1).abs().max()) <= 0.1 + 1e-9 and float(shift_px.abs().max()) <= 2 + 1e-9
    # uniform on [-a, a]: mean 0, variance a²/3
    for values, a in ((angle, bound), (scale - 1, 0.1), (shift_px[:, 0], 2.0), (shift_px[:, 1], 2.0)):
        assert float(values.mean()) == pytest.approx(0, abs=0.02 * a)
        assert float(values.var()) == pytest.approx(a * a / 3, rel=0.03)


def test_fitting_refuses_mismatched_inputs():
    classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned"], width=4)
    with pytest.raises(ValueError, match="5 labels"):
        classifier.fit({"aligned": torch.zeros(4, 1, 28, 28)}, torch.zeros(5, dtype=torch.long), 1, 2, 1e-3,
                       Augmentation(), 0, progress=False)


def test_the_centred_view_moves_the_centre_of_mass_to_the_centre_without_turning():
    config = load_config("configs/se2_gmm.yaml")
    model = build_model(config.model, (1, 28, 28))
    blob = torch.zeros(1, 1, 28, 28)
    blob[0, 0, 3:9, 4:7] = 1.0  # an upright bar off in a corner
    shift = torch.tensor([[8.0, 4.0]]) / 28  # whole pixels (4, 2): no resampling blur between the two
    views = model.classifier_inputs(blob, torch.zeros_like(blob))
    centred = views["centred"]
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    mass = centred[0, 0]
    assert float((mass * xs).sum() / mass.sum()) == pytest.approx(13.5, abs=0.3)
    assert float((mass * ys).sum() / mass.sum()) == pytest.approx(13.5, abs=0.3)
    # still upright: taller than wide, and the same image wherever it started
    rows, cols = (mass > 0.5).any(1).sum(), (mass > 0.5).any(0).sum()
    assert rows > cols
    moved = act(blob, translations(shift), "zeros")
    assert torch.allclose(model.classifier_inputs(moved, torch.zeros_like(blob))["centred"], centred, atol=0.05)


def test_the_model_assigns_by_the_classifiers_once_fitted():
    config = load_config("configs/se2_gmm.yaml", ["model.readout.classifier={epochs: 2, width: 4, min_agreement: 0.5}"])
    model = build_model(config.model, (1, 28, 28))
    generator = torch.Generator().manual_seed(1)
    images, _ = bars(120, generator)
    model.cluster_prior.initialize(model.encoded_posterior(images).mean)
    assert model.readout_pending
    with pytest.raises(ValueError, match="pass their settings"):
        model.fit_readout(images)
    model.fit_readout(images, classifier=config.model.readout.classifier, batch_size=40, seed=0)
    assert not model.readout_pending
    out = model(images[:30], sample=False)
    post = out.posteriors["cluster"]
    stages = model.assignments(post, images[:30], out.aligned)
    assert list(stages) == ["prior", "neighbours", "classifier"]
    assert torch.equal(model.assign(post, images[:30], out.aligned), stages["classifier"])
    with pytest.raises(ValueError, match="pass x and aligned"):
        model.assign(post)
    # the same settings and seed give the same classifiers
    again = build_model(config.model, (1, 28, 28))
    trained = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    again.load_state_dict(trained, strict=False)
    again.fit_readout(images, classifier=config.model.readout.classifier, batch_size=40, seed=0)
    inputs = {"aligned": images, "centred": images}
    assert torch.equal(again.classifier.log_probs(inputs), model.classifier.log_probs(inputs))


def test_members_average_their_log_probabilities():
    generator = torch.Generator().manual_seed(0)
    images, labels = bars(150, generator)
    classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned", "centred"], width=4, members=3)
    classifier.fit({"aligned": images, "centred": images}, labels, epochs=1, batch_size=50, lr=3e-3,
                   augment=Augmentation(), seed=0, progress=False)
    assert all(len(members) == 3 for members in classifier.nets.values())
    inputs = {"aligned": images[:7], "centred": images[:7].flip(-1)}
    one = {view: [net(inputs[view]).log_softmax(1) for net in members] for view, members in classifier.nets.items()}
    expected = sum(torch.stack(parts).mean(0) for parts in one.values())
    assert torch.allclose(classifier.log_probs(inputs, chunk=3), expected, atol=1e-6)
    # each member its own initialisation: three different classifiers, not one three times
    assert not torch.equal(classifier.nets["aligned"][0][0].weight, classifier.nets["aligned"][1][0].weight)


def test_kept_rounds_assign_together_and_each_round_overwrites_the_oldest():
    images, labels = bars(120, torch.Generator().manual_seed(1))
    classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned", "centred"], width=4, members=2,
                                     kept_rounds=2)
    assert all(len(nets) == 4 for nets in classifier.nets.values())  # members × kept rounds
    inputs = {"aligned": images, "centred": images}
    test = {"aligned": images[:9], "centred": images[:9].flip(-1)}

    def fit(round_: int) -> None:
        classifier.fit(inputs, labels, epochs=1, batch_size=40, lr=3e-3, augment=Augmentation(), seed=round_,
                       progress=False, round_=round_)

    def reading(slots: list[int]) -> torch.Tensor:
        """The views' summed log-probabilities, averaged over the CNNs of these slots."""
        return sum(torch.stack([net(test[view]).log_softmax(1) for slot in slots
                                for net in list(classifier.nets[view])[2 * slot:2 * slot + 2]]).mean(0)
                   for view in classifier.views)

    fit(0)
    assert torch.allclose(classifier.log_probs(test), reading([0]), atol=1e-6)  # the unfitted slot does not read
    fit(1)
    assert torch.allclose(classifier.log_probs(test), reading([0, 1]), atol=1e-6)
    assert torch.allclose(classifier.log_probs(test, latest=True), reading([1]), atol=1e-6)
    second = {k: v.clone() for k, v in classifier.nets["aligned"][2].state_dict().items()}
    first = {k: v.clone() for k, v in classifier.nets["aligned"][0].state_dict().items()}
    fit(2)  # the third round takes the first's slot and keeps the second's
    assert all(torch.equal(v, classifier.nets["aligned"][2].state_dict()[k]) for k, v in second.items())
    assert not torch.equal(first["0.weight"], classifier.nets["aligned"][0][0].weight)
    assert torch.allclose(classifier.log_probs(test, latest=True), reading([0]), atol=1e-6)
    assert int(classifier.fitted) == 3 and torch.equal(classifier.assign(test), reading([0, 1]).argmax(1))
    # at most all rounds are kept: a model with fewer rounds keeps only those
    config = load_config("configs/se2_gmm.yaml", ["model.readout.classifier={rounds: 2, kept_rounds: 3}"])
    assert build_model(config.model, (1, 28, 28)).classifier.kept_rounds == 2


def test_equipartition_gives_each_cluster_an_equal_share_and_moves_the_least_sure_rows():
    # one cluster favoured by every row: the argmax puts nearly all rows there, the equipartition a tenth
    generator = torch.Generator().manual_seed(0)
    log_probs = (torch.randn(2000, 10, generator=generator) + 3 * torch.eye(10)[0]).log_softmax(1)
    assert int(torch.bincount(log_probs.argmax(1), minlength=10).min()) < 50
    counts = torch.bincount(equipartition(log_probs), minlength=10)
    assert int(counts.min()) >= 180 and int(counts.max()) <= 220
    # four rows for cluster 0, two for 1: the one least sure of 0 goes to 1, the others keep their argmax
    probs = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])
    assert equipartition(probs.log()).tolist() == [0, 0, 0, 1, 1, 1]
    # already equal shares: the argmax itself
    assert torch.equal(equipartition((5 * torch.eye(10)).log_softmax(1)), torch.arange(10))


@pytest.mark.parametrize("balanced", [True, False])
def test_later_rounds_are_taught_by_the_previous_rounds_clusters_on_every_image(monkeypatch, balanced):
    config = load_config("configs/se2_gmm.yaml", [
        "model.readout.classifier={epochs: 1, width: 4, min_agreement: 0.9, rounds: 3, "
        f"balanced: {str(balanced).lower()}}}"])
    model = build_model(config.model, (1, 28, 28))
    images, _ = bars(120, torch.Generator().manual_seed(2))
    model.cluster_prior.initialize(model.encoded_posterior(images).mean)
    taught: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    rounds: list[int] = []
    taught_unsure: list[torch.Tensor] = []
    fit = model.classifier.fit
    all_unsure = model.unsure_upright(model.centred(images))  # not fitted: every image keeps its moment angle

    def recording_fit(inputs, labels, epochs, batch_size, lr, augment, seed, progress, round_, unsure):
        before = None
        if model.classifier.is_fitted:  # read as the aligned view is taught: an unsure upright at its four turns
            log_probs = model.classifier.log_probs(all_inputs, all_unsure, latest=True)
            before = equipartition(log_probs) if balanced else log_probs.argmax(1)
        taught.append((labels.shape[0], labels.clone(), before))
        rounds.append(round_)
        taught_unsure.append(unsure)
        return fit(inputs, labels, epochs, batch_size, lr, augment, seed, progress, round_, unsure)

    model.eval()
    with torch.no_grad():
        out = model(images, sample=False)
    all_inputs = model.classifier_inputs(images, out.aligned)
    monkeypatch.setattr(model.classifier, "fit", recording_fit)
    model.fit_readout(images, classifier=config.model.readout.classifier, batch_size=40, seed=0)
    assert len(taught) == 3 and rounds == [0, 1, 2]
    _, agreement = model.readout.bank_agreement()
    assert taught[0][0] == int((agreement >= 0.9).sum()) < 120 and taught[0][2] is None
    for n, labels, previous in taught[1:]:
        assert n == 120 and torch.equal(labels, previous)
    assert [int(u.sum()) for u in taught_unsure] == [taught[0][0], 120, 120]  # each taught image's own flag


def test_views_are_checked():
    with pytest.raises(ConfigError, match="each view at most once"):
        load_config("configs/se2_gmm.yaml", ["model.readout.classifier.views=[aligned, aligned]"])
    with pytest.raises(ConfigError, match="views"):
        load_config("configs/se2_gmm.yaml", ["model.readout.classifier.views=[upside_down]"])


@pytest.mark.parametrize("turns", [2, 4])
def test_an_unsure_images_reading_does_not_depend_on_which_of_the_turns_it_came_in(turns):
    classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned", "centred"], width=4, members=2,
                                     unsure_turns=turns).eval()  # dropout off, as after a fit
    images, _ = bars(12, torch.Generator().manual_seed(4))
    centred = images.flip(-1)
    unsure = torch.arange(12) % 2 == 0
    plain = classifier.log_probs({"aligned": images, "centred": centred})
    read = classifier.log_probs({"aligned": images, "centred": centred}, unsure, chunk=5)
    assert torch.allclose(read[~unsure], plain[~unsure], atol=1e-6)  # a sure upright is read as it is
    assert not torch.allclose(read[unsure], plain[unsure])
    for k in range(4 // turns, 4, 4 // turns):  # the same image turned by one of the read turns
        turned_in = {"aligned": torch.rot90(images, k, dims=(-2, -1)), "centred": centred}
        assert torch.allclose(classifier.log_probs(turned_in, unsure)[unsure], read[unsure], atol=1e-5)
    # each CNN's reading averages its probabilities over the turns (log of the mean of exp); the CNNs' readings
    # are then averaged as log-probabilities
    aligned = torch.stack([torch.stack([net(torch.rot90(images, k * (4 // turns), dims=(-2, -1))).log_softmax(1)
                                        for k in range(turns)]).exp().mean(0).log()
                           for net in classifier.nets["aligned"]]).mean(0)
    centred_part = torch.stack([net(centred).log_softmax(1) for net in classifier.nets["centred"]]).mean(0)
    assert torch.allclose(read[unsure], (aligned + centred_part)[unsure], atol=1e-5)


def test_a_partly_unsure_image_is_read_with_both_readings_mixed():
    classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned"], width=4, unsure_turns=4).eval()
    net = classifier.nets["aligned"][0]
    images, _ = bars(5, torch.Generator().manual_seed(6))
    unsure = torch.tensor([0.0, 0.25, 0.5, 1.0, 0.9])
    read = classifier.log_probs({"aligned": images}, unsure)
    one = net(images).softmax(1)
    turns = torch.stack([net(torch.rot90(images, k, dims=(-2, -1))).softmax(1) for k in range(4)]).mean(0)
    expected = (unsure[:, None] * turns + (1 - unsure[:, None]) * one).log()
    assert torch.allclose(read, expected, atol=1e-5)
    # the ends are the two readings exactly, as the hard threshold reads them
    hard = classifier.log_probs({"aligned": images}, unsure == 1)
    assert torch.equal(read[[0, 3]], hard[[0, 3]])
    assert not torch.allclose(read[[1, 2, 4]], hard[[1, 2, 4]])


def test_unsure_turns_are_checked():
    with pytest.raises(ValueError, match="unsure_turns: 3 is not one of 1, 2, 4"):
        SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned"], width=4, unsure_turns=3)
    with pytest.raises(ValueError, match="4 needs square images, got 28×20"):
        SelfLabelClassifier((1, 28, 20), clusters=3, views=["aligned"], width=4, unsure_turns=4)
    SelfLabelClassifier((1, 28, 20), clusters=3, views=["aligned"], width=4, unsure_turns=2)  # half turns fit any
    with pytest.raises(ValueError, match="frame_turns: 4 is not one of 1, 2, 4 \\(4 needs square images"):
        SelfLabelClassifier((1, 28, 20), clusters=3, views=["aligned"], width=4, frame_turns=4)
    with pytest.raises(ValidationError):
        ClassifierConfig(frame_turns=3)
    with pytest.raises(ValidationError):
        ClassifierConfig(unsure_turns=3)
    unfitted = build_model(load_config("configs/se2_gmm.yaml").model, (1, 28, 28))
    assert torch.equal(unfitted.unsure_upright(torch.rand(3, 1, 28, 28), 0.1), torch.ones(3))  # unfitted: all kept
    no_upright = load_config("configs/se2_gmm.yaml", ["model.upright=null"])
    assert build_model(no_upright.model, (1, 28, 28)).unsure_upright(torch.zeros(2, 1, 28, 28)) is None


@pytest.mark.parametrize("turns", [2, 4])
def test_frame_turns_make_the_aligned_reading_and_teaching_invariant_to_those_turns_without_an_upright(turns):
    """Without a learned upright (no unsure flags), ``frame_turns`` reads every image's aligned view at its turns:
    the assignment is then the same for any of those turns of the frame, and the teaching loss reads the same."""
    classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned", "centred"], width=4,
                                     frame_turns=turns).eval()
    images, labels = bars(10, torch.Generator().manual_seed(8))
    centred = images.flip(-2)
    read = classifier.log_probs({"aligned": images, "centred": centred}, chunk=4)
    for k in range(4 // turns, 4, 4 // turns):
        turned_in = {"aligned": torch.rot90(images, k, dims=(-2, -1)), "centred": centred}
        assert torch.allclose(classifier.log_probs(turned_in), read, atol=1e-5)
    net = classifier.nets["aligned"][0]
    averaged = torch.stack([net(torch.rot90(images, k * (4 // turns), dims=(-2, -1))).softmax(1)
                            for k in range(turns)]).mean(0).log()
    # the centred view keeps the data's own orientation: read once, as it is
    assert torch.allclose(read - classifier.nets["centred"][0](centred).log_softmax(1), averaged, atol=1e-5)
    flagged, count = classifier.turned(None, 10, images.device)
    assert count == turns and torch.equal(flagged, torch.ones(10))
    assert torch.allclose(classifier.teaching_logits(net, images, flagged, count), averaged, atol=1e-5)
    # with the flags of a learned upright, unsure_turns decides, not frame_turns
    assert classifier.turned(torch.zeros(10), 10, images.device)[1] == classifier.unsure_turns == 1
    plain = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned"], width=4)
    assert plain.turned(None, 10, images.device) == (None, 1)
    # a fit teaches the aligned view at the turns: the same draws give other weights than without them
    def fitted(frame_turns: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        fresh = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned"], width=4, frame_turns=frame_turns)
        fresh.fit({"aligned": images}, labels, epochs=1, batch_size=5, lr=3e-3, augment=Augmentation(), seed=0,
                  progress=False)
        return fresh.state_dict()
    once, at_turns = fitted(1), fitted(turns)
    assert not all(torch.equal(once[name], at_turns[name]) for name in once)


def test_the_classifiers_keep_their_weights_channels_last_and_read_as_the_plain_layout_does():
    generator = torch.Generator().manual_seed(0)
    images, labels = bars(120, generator)
    classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned"], width=4)
    classifier.fit({"aligned": images}, labels, epochs=1, batch_size=40, lr=3e-3, augment=Augmentation(), seed=0,
                   progress=False)
    second = classifier.nets["aligned"][0][2]  # 4 → 4 channels: the two layouts differ
    assert second.weight.is_contiguous(memory_format=torch.channels_last)
    plain = copy.deepcopy(classifier.nets["aligned"][0]).to(memory_format=torch.contiguous_format)
    assert not plain[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(classifier.log_probs({"aligned": images}), plain(images).log_softmax(1), atol=1e-5)


def test_an_unsure_image_is_taught_by_its_probabilities_averaged_over_its_turns():
    classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=["aligned"], width=4, unsure_turns=4).eval()
    net = classifier.nets["aligned"][0]
    images, _ = bars(6, torch.Generator().manual_seed(5))
    unsure = torch.tensor([True, False, True, False, False, True])
    logits = classifier.teaching_logits(net, images, unsure)
    assert torch.allclose(logits[~unsure], net(images[~unsure]).log_softmax(1), atol=1e-5)
    turns = torch.stack([net(torch.rot90(images, k, dims=(-2, -1))).softmax(1) for k in range(4)])
    assert torch.allclose(logits[unsure], turns.mean(0).log()[unsure], atol=1e-5)
    assert torch.equal(classifier.teaching_logits(net, images, None), net(images))  # nothing unsure: plain logits
    # so the loss of an unsure image is small when the CNN knows it at any one of its turns
    labels = torch.zeros(6, dtype=torch.long)
    taught = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(taught[unsure], -turns[:, :, 0].mean(0).log()[unsure], atol=1e-5)


def test_unsure_flags_change_the_aligned_views_teaching_only():
    images, labels = bars(60, torch.Generator().manual_seed(6))
    unsure = torch.arange(60) % 3 == 0

    def fitted(view: str, flags: torch.Tensor | None) -> tuple[float, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        classifier = SelfLabelClassifier((1, 28, 28), clusters=3, views=[view], width=4, unsure_turns=4)
        (loss,) = classifier.fit({view: images}, labels, epochs=1, batch_size=20, lr=3e-3, augment=Augmentation(),
                                 seed=0, progress=False, unsure=flags)
        return loss, classifier.state_dict()

    plain_loss, plain = fitted("aligned", None)
    taught_loss, taught = fitted("aligned", unsure)
    assert taught_loss != pytest.approx(plain_loss, abs=1e-6)
    assert not all(torch.equal(plain[name], taught[name]) for name in plain)
    plain_loss, plain = fitted("centred", None)
    taught_loss, taught = fitted("centred", unsure)
    assert taught_loss == plain_loss and all(torch.equal(plain[name], taught[name]) for name in plain)


def test_cuts_take_away_what_lies_beyond_an_edge_and_centre_the_rest():
    disc = (torch.linspace(-1, 1, 28).view(1, 28) ** 2 + torch.linspace(-1, 1, 28).view(28, 1) ** 2 < 0.4)
    images = disc.float().expand(400, 1, 28, 28).clone()
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert Augmentation(cut_share=0.0).cut(images, generator) is images
    assert torch.equal(generator.get_state(), state)  # no cuts, no draws: earlier fits stay as they were
    cut = Augmentation(cut_share=1.0, cut_distance=(0.0, 0.0)).cut(images, generator)
    # an edge through the centre of a centred disc keeps half of it, mass-centred again
    assert float((cut.sum((1, 2, 3)) / images.sum((1, 2, 3))).mean()) == pytest.approx(0.5, abs=0.03)
    assert float(moment_pose(cut)[:, :2, 2].abs().max()) < 0.02
    far = Augmentation(cut_share=1.0, cut_distance=(3.0, 3.0)).cut(images, generator)
    assert torch.allclose(far, images, atol=1e-5)  # an edge beyond the frame takes nothing
    some = Augmentation(cut_share=0.3, cut_distance=(0.0, 0.0)).cut(images, generator)
    share = float((some.sum((1, 2, 3)) < 0.9 * images.sum((1, 2, 3))).float().mean())
    assert share == pytest.approx(0.3, abs=0.07)


def test_cut_distances_are_checked():
    with pytest.raises(ValidationError, match="0 <= low <= high"):
        ClassifierConfig(cut_distance=(0.8, 0.25))
    with pytest.raises(ValidationError):
        ClassifierConfig(cut_share=1.5)
