// quantize's sensitivity pass runs the fp32 plan step by step and reruns only the steps from one
// product on with that product in another precision. That must give exactly the outputs of a
// whole new plan with only that product changed, for every product of every layer kind.

import MixerInference
import MixerKernels
import MixerModel
import XCTest

final class PartialForwardTests: XCTestCase {
  func testRerunFromOneProductEqualsAWholePlanWithThatProductChanged() throws {
    for (name, config) in layerKindConfigs() {
      let (model, images) = try randomModel(config)
      let inputs = try calibrate(model: model, images: images, count: 3, method: .minMax)
      let plan = try InferencePlan(model: model, precision: .fp32)
      let reference = planOutputs(plan, images, batch: 3)
      try images.withUnsafeBufferPointer { x in
        var position = 0
        for (j, layer) in plan.layers.enumerated() {
          let t = plan.step(ofKernel: j)
          plan.run(steps: position..<t, images: x.baseAddress!, batch: 3)
          position = t
          let saved = plan.savedValues(batch: 3)
          for setting in [LayerSetting(precision: .int8, input: inputs[layer.name]), LayerSetting(precision: .bf16)] {
            let kernel = try setting.precision.makeKernel(
              weight: model.parameters.pointer + model.table.offset(OfficialName.kernel(layer.name)),
              bias: model.parameters.pointer + model.table.offset(OfficialName.bias(layer.name)),
              inputs: layer.inputs, outputs: layer.outputs, setting: setting)
            let out = plan.replacingKernel(j, with: kernel) { plan.run(steps: t..<plan.stepCount, images: x.baseAddress!, batch: 3) }
            let partial = Array(UnsafeBufferPointer(start: out, count: 3 * plan.outputsPerImage))
            plan.restoreValues(saved, batch: 3)
            let whole = planOutputs(try InferencePlan(model: model, settings: [layer.name: setting]), images, batch: 3)
            XCTAssertEqual(partial, whole, "\(name): \(layer.name) in \(setting.precision)")
            XCTAssertNotEqual(partial, reference, "\(name): \(layer.name) in \(setting.precision) changed nothing")
          }
        }
        // the buffers put back: the rest of the fp32 forward gives the fp32 outputs
        let out = plan.run(steps: position..<plan.stepCount, images: x.baseAddress!, batch: 3)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: out, count: 3 * plan.outputsPerImage)), reference, name)
      }
    }
  }
}
