//===- MoEDialect.td - The moe dialect ---------------------*- tablegen -*-===//
//
// Part of the moe-mlir project.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_DIALECT_MOE_IR_MOEDIALECT_TD
#define MOE_DIALECT_MOE_IR_MOEDIALECT_TD

include "mlir/IR/OpBase.td"

def MoE_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::mlir::moe";
  let summary = "Mixture-of-Experts layers at tensor level";
  let description = [{
    The `moe` dialect describes a Mixture-of-Experts layer with value semantics.
    `moe.layer` holds a whole layer; `moe-expand` splits it into the stages
    that later passes tile and fuse:

    * `moe.gate` — router scores, top-k expert ids and routing weights per
      token (all routing math in f32);
    * `moe.refine` — for a hierarchical layer (experts that are MoE layers,
      `#moe.level`), the routing one level down: each chosen expert routes
      its tokens among its own experts, so that ids name leaf experts;
    * `moe.dispatch` — the routing plan: token slots grouped by expert, each
      expert's segment padded to a row tile, and the inverse map;
    * `moe.expert` — every expert's FFN over its own segment, weights read in
      place through the plan;
    * `moe.shared_expert` — the dense FFN every token goes through;
    * `moe.combine` — the weighted reduction back to token order.

    The math each op computes is SPEC §1 of the project; every verifier
    diagnostic names the operand or attribute and the rule it enforces.
  }];
  let useDefaultAttributePrinterParser = 1;
}

#endif // MOE_DIALECT_MOE_IR_MOEDIALECT_TD
