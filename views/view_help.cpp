#include "views/view_help.h"

namespace kvscope::views {

const std::vector<ViewHelp>& all_view_help() {
    static const std::vector<ViewHelp> help = {
        {"token_strip", "Token strip", "Token strip",
         "The prompt and the generated text, one box per token, in reading order. A box's colour "
         "is what the cache did with that token by the current step in the selected layer and "
         "head: green = still held at full precision, yellow to red = held with fewer bits, "
         "purple = demoted, blue = merged into another token, dark red = evicted. With all heads "
         "selected the colour is the heads' majority, paler where they disagree. Pink underlines "
         "mark the needle. Hover a token to see its fate in every layer; click to select it in "
         "every view."},
        {"eviction_timeline", "Eviction timeline", "Timeline",
         "Time runs down, tokens run across: row y is decode step y (the prompt's compression is "
         "step 0 at the top) and each column is a token position. A cell has the colour of the "
         "token's state after that step, so an eviction shows as a colour change going down the "
         "column and a policy's pattern (recent window kept, sinks kept, middle thinned) shows as "
         "stripes. A horizontal line marks the current step. Wheel zooms the token axis, drag "
         "pans, "
         "double-click fits; a click selects a token and a step."},
        {"layer_head", "Layer × head", "Layer × head",
         "One cell per layer (row) and cache head (column): the share of the tokens seen so far "
         "that this head still holds after the current step (or, switched, the bytes it holds). "
         "Pale cells kept much, dark cells kept little, so uneven budgets across layers or heads "
         "stand out. The bar at the right of a row is the layer's recorded bytes. Click a cell to "
         "select that layer and head everywhere, a row label to select the layer with all heads."},
        {"budgets", "Budgets", "Budgets",
         "How the policy spread its token budget. Left: one bar per layer at the current step "
         "(the mean over heads; whiskers span the smallest to the largest head; a tick marks the "
         "tokens actually held). A flat row of bars is a uniform budget, a ramp is PyramidKV, "
         "uneven bars follow attention density (D2O). Right: each layer's budget over the steps. "
         "Click a bar to select its layer."},
        {"density", "Density and key norms", "Density",
         "Statistics of the prompt that some policies rank tokens by. Top: attention density per "
         "layer (low bars = attention spread evenly over many tokens). Bottom left: one dot per "
         "prompt token of the selected layer and head, key norm across and attention received up "
         "(log scale); the legend names the colours (pink = needle tokens, the selected token "
         "ringed). Points falling from left to right mean small keys draw attention, which is "
         "what K-norm eviction relies on; rho measures it. Right: rho for every layer and head."},
        {"merges", "Merges", "Merges",
         "For policies that merge instead of evicting (D2O, DMC): an arc runs from each merged "
         "token to the token it was folded into, in the selected layer and head, up to the "
         "current step; darker arcs carry more weight. The table below lists the same merges "
         "(step, source token, target token, weight). Zoom and pan the token axis as in the "
         "timeline; click a row or an arc end to select the token."},
        {"precision", "Precision map", "Precision",
         "For policies that quantise (MiKV, KIVI): one row per layer, tokens across, coloured by "
         "the number of bits the selected head keeps each token at after the current step - "
         "green at full precision, through yellow to red at 2 bits; evicted and merged tokens "
         "keep their state colours. The bar at the right of a row is the layer's mean bits. A "
         "layer that turns red early is where the policy saves most."},
        {"needle", "Needle", "Needle",
         "Did the cache keep the fact the question asks about? The header gives the expected "
         "answer and the verdict (RIGHT or WRONG). The matrix shows, per layer and head, the "
         "share of the needle's tokens still held; the survival plot shows that share over the "
         "steps (mean over heads, the lowest head, and the selected head, named in its legend). "
         "For the selected head, the panel below explains why needle tokens left: their score "
         "against the policy's cut-off and the tokens that took their place. Click a cell to "
         "select a head, the plot to set the step."},
        {"compare", "Compare", "Compare",
         "Two runs of the same model on the same prompt, A (the open trace) and B (File > Compare "
         "with...), at the same step: each run's policy, budget, verdict and output; the bytes "
         "each layer holds (a bar for A and one for B); and per layer and head the overlap of the "
         "two held sets (1 = the same tokens, 0 = none in common). In the other views, orange "
         "marks tokens held only by A and cyan tokens held only by B."},
        {"niah_grid", "NIAH grid", "NIAH grid",
         "A needle-in-a-haystack sweep (kvscope niah): rows are how deep in the context the "
         "needle sat, columns the context length, and each cell the share of trials whose answer "
         "was found (red = never, green = always). The row below is the full-cache baseline; a "
         "corner mark flags cells where even the full cache failed, which is the model's limit "
         "and not the policy's. Click a cell to open its run against the full-cache run."},
    };
    return help;
}

const ViewHelp* view_help(std::string_view id) {
    for (const ViewHelp& h : all_view_help()) {
        if (id == h.id) return &h;
    }
    return nullptr;
}

}  // namespace kvscope::views
